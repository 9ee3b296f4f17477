"""The review web app through Flask's test client: pages, escaping, edits, CSRF, tokens."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from pipeline.artifacts import Timeline
from pipeline.errors import ConfigError
from pipeline.models import Job, Status
from pipeline.review import service
from pipeline.review.app import TokenGuard, create_app
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.captions.readback import CONTROL, HOSTILE_TEXTS, ffmpeg_cues
from tests.conftest import learncast
from tests.review.browser import ReviewServer
from tests.review.conftest import MakeEpisode

#: A token as `python -c "import secrets; print(secrets.token_urlsafe(32))"` makes one.
TOKEN = "Zt7q-Lx2mVb9Rk4NwP8sYc3HdJ6gFa1E_oQ5uT0iWnM"


def client_for(ctx: Context, db: StateDB, **kwargs: str) -> FlaskClient:
    return create_app(ctx, db, **kwargs).test_client()


def csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def as_reviewer(client: FlaskClient, job_id: str, name: str) -> str:
    """Say who reviews, once (the page's 'Reviewing as'), and return the episode page."""
    token = csrf(client.get(f"/episodes/{job_id}").get_data(as_text=True))
    said = client.post("/reviewer", data={"csrf_token": token, "reviewer": name,
                                          "next": f"/episodes/{job_id}"})
    assert said.status_code == 303 and said.location.endswith(f"/episodes/{job_id}#reviewer")
    return client.get(f"/episodes/{job_id}").get_data(as_text=True)


@pytest.fixture
def episode(make_episode: MakeEpisode) -> Job:
    return make_episode("video")


def test_list_and_filters(ctx: Context, db: StateDB, episode: Job,
                          make_episode: MakeEpisode) -> None:
    make_episode("audio", name="briefing")
    client = client_for(ctx, db)
    page = client.get("/").get_data(as_text=True)
    assert "Onboarding" in page and "Briefing" in page
    assert "All episodes (2)" in page and "Needs review (1)" in page
    needs = client.get("/?filter=needs-review").get_data(as_text=True)
    assert "Onboarding" in needs and "Briefing" not in needs
    assert re.search(r"<td>3</td>\s*<td>1</td>\s*<td>[\d.]+ / [\d.]+</td>", needs), \
        "violations, low-confidence words and reading speed are shown"
    assert "Onboarding" not in client.get("/?filter=approved").get_data(as_text=True)


def test_episode_page_escapes_transcript_text(ctx: Context, db: StateDB, episode: Job) -> None:
    db.save(episode.replace(title='Quiz <img src=x onerror="alert(1)">'))
    response = client_for(ctx, db).get(f"/episodes/{episode.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert(1)" not in page and "</textarea> into" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/textarea&gt; into forms." in page
    assert "<img src=x" not in page and "Quiz &lt;img" in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert '<mark class="low">expense' in page
    assert f'src="/episodes/{episode.id}/media/video"' in page
    assert f'<track kind="captions" src="/episodes/{episode.id}/media/vtt?rev=1"' in page


def test_media_and_captions_are_served_with_ranges(ctx: Context, db: StateDB,
                                                   episode: Job) -> None:
    client = client_for(ctx, db)
    part = client.get(f"/episodes/{episode.id}/media/video", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100
    vtt = client.get(f"/episodes/{episode.id}/media/vtt")
    assert vtt.mimetype == "text/vtt" and vtt.data.startswith(b"WEBVTT")
    assert client.get(f"/episodes/{episode.id}/media/original").status_code == 404
    assert client.get("/episodes/nope").status_code == 404


def test_edit_through_the_form_rewrites_files(ctx: Context, db: StateDB, episode: Job) -> None:
    client = client_for(ctx, db)
    token = csrf(client.get(f"/episodes/{episode.id}").get_data(as_text=True))
    response = client.post(f"/episodes/{episode.id}/cues/2/edit", data={
        "csrf_token": token, "revision": "1", "reviewer": "Ana", "start": "00:00:02.200",
        "end": "4.1", "text": "Today we look at the\r\ntravel expense policy."})
    assert response.status_code == 303 and response.location.endswith("#cue-2")
    job = db.get(episode.id)
    assert job is not None and service.revision(job) == 2
    vtt = ctx.workspace.abs(job.files["vtt"]).read_text()
    assert "00:00:02.200 --> 00:00:04.100\nToday we look at the\ntravel expense policy." in vtt
    page = client.get(f"/episodes/{episode.id}").get_data(as_text=True)
    assert "Saved: edited cue 2" in page and "1 word edit(s)" in page
    # a stale form (revision 1) is refused, nothing changes
    stale = client.post(f"/episodes/{episode.id}/cues/1/merge", data={
        "csrf_token": token, "revision": "1", "reviewer": "Ana"})
    assert stale.status_code == 409 and "reload" in stale.get_data(as_text=True)
    bad = client.post(f"/episodes/{episode.id}/cues/1/edit", data={
        "csrf_token": token, "revision": "2", "reviewer": "Ana", "start": "soon", "end": "1",
        "text": "x"})
    assert bad.status_code == 400 and "is not a time" in bad.get_data(as_text=True)
    split = client.post(f"/episodes/{episode.id}/cues/1/split", data={
        "csrf_token": token, "revision": "2", "reviewer": "Ana", "after_word": "2"})
    assert split.status_code == 303
    job = db.get(episode.id)
    assert job is not None and job.measurements["caption_cues"] == 5


#: (start, end, what the 400 page says): none may crash, none may reach a caption file.
BAD_TIMES = [
    ("2.2", "inf", "is not a time"), ("2.2", "1" * 300, "is not a time"),
    ("nan", "4", "is not a time"), ("2.2", "1e309", "is not a time"),
    ("2.2", "-inf", "is not a time"), ("00:00:02.200", "00:00:" + "9" * 300 + ".000",
                                        "is not a time"),
    ("2.2", "100", "after the end of the media"), ("2.2", "25:00:00.000", "is not a time"),
    ("7.9", "8.9", "after the end of the media"), ("5", "4", "after the start"),
]


def test_cue_times_are_validated_before_anything_is_written(ctx: Context, db: StateDB,
                                                            episode: Job) -> None:
    client = client_for(ctx, db)
    token = csrf(client.get(f"/episodes/{episode.id}").get_data(as_text=True))
    vtt = ctx.workspace.abs(episode.files["vtt"])
    before = vtt.read_bytes()
    for start, end, message in BAD_TIMES:
        response = client.post(f"/episodes/{episode.id}/cues/2/edit", data={
            "csrf_token": token, "revision": "1", "reviewer": "Ana", "start": start,
            "end": end, "text": "x"})
        page = response.get_data(as_text=True)
        assert response.status_code == 400, (start, end, response.status_code)
        assert message in page, (start, end, page[-600:])
    assert vtt.read_bytes() == before
    assert db.get(episode.id).measurements.get("caption_revision", 1) == 1  # type: ignore[union-attr]


def test_typed_text_never_breaks_the_caption_files(ctx: Context, db: StateDB, episode: Job,
                                                   ffmpeg: str, webvtt_validate: Any) -> None:
    """Timing lines, blank lines and control characters typed into a cue: every saved VTT and
    SRT still holds exactly four cues for ffmpeg and the W3C parser, and no control bytes."""
    client = client_for(ctx, db)
    token = csrf(client.get(f"/episodes/{episode.id}").get_data(as_text=True))
    for revision, text in enumerate(HOSTILE_TEXTS, 1):
        response = client.post(f"/episodes/{episode.id}/cues/2/edit", data={
            "csrf_token": token, "revision": str(revision), "reviewer": "Ana",
            "start": "00:00:02.200", "end": "4.0", "text": text})
        assert response.status_code == 303, (text, response.get_data(as_text=True)[-600:])
        job = db.get(episode.id)
        assert job is not None
        for key in ("vtt", "srt"):
            path = ctx.workspace.abs(job.files[key])
            assert ffmpeg_cues(ffmpeg, path) == [(0.5, 2.0), (2.2, 4.0), (4.2, 6.0),
                                                 (6.2, 7.6)], (text, path.read_text())
            assert not CONTROL.search(path.read_text(encoding="utf-8")), (text, key)
        checked = webvtt_validate(ctx.workspace.abs(job.files["vtt"]))
        assert checked["errors"] == [] and len(checked["cues"]) == 4, (text, checked)


def test_approve_through_the_form(ctx: Context, db: StateDB, episode: Job) -> None:
    client = client_for(ctx, db)
    token = csrf(client.get(f"/episodes/{episode.id}").get_data(as_text=True))
    response = client.post(f"/episodes/{episode.id}/decision", data={
        "csrf_token": token, "revision": "1", "reviewer": "Ana", "action": "approve"})
    assert response.status_code == 303
    assert db.get(episode.id).status is Status.QUEUED  # type: ignore[union-attr]
    assert [r["action"] for r in db.reviews(episode.id)] == ["approve"]


def test_state_changes_need_the_csrf_token_and_same_origin(ctx: Context, db: StateDB,
                                                           episode: Job) -> None:
    client = client_for(ctx, db)
    token = csrf(client.get(f"/episodes/{episode.id}").get_data(as_text=True))
    form = {"revision": "1", "reviewer": "Mallory", "action": "approve"}
    url = f"/episodes/{episode.id}/decision"
    assert client.post(url, data=form).status_code == 403
    assert client.post(url, data={**form, "csrf_token": "forged"}).status_code == 403
    # another session's token is worth nothing here
    other = client_for(ctx, db)
    assert other.post(url, data={**form, "csrf_token": token}).status_code == 403
    cross = client.post(url, data={**form, "csrf_token": token},
                        headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and "another site" in cross.get_data(as_text=True)
    assert db.reviews(episode.id) == []
    assert db.get(episode.id).status is Status.AWAITING_REVIEW  # type: ignore[union-attr]


def test_loopback_binding_refuses_foreign_host_names(ctx: Context, db: StateDB,
                                                     episode: Job) -> None:
    client = client_for(ctx, db)
    assert client.get("/", headers={"Host": "127.0.0.1:8090"}).status_code == 200
    rebound = client.get("/", headers={"Host": "attacker.example:8090"})
    assert rebound.status_code == 400 and "localhost" in rebound.get_data(as_text=True)


def test_token_is_required_off_loopback(ctx: Context, db: StateDB, episode: Job) -> None:
    with pytest.raises(ConfigError, match="LEARNCAST_REVIEW__TOKEN"):
        create_app(ctx, db, host="0.0.0.0")
    client = client_for(ctx, db, host="0.0.0.0", token=TOKEN)
    denied = client.get("/", headers={"Host": "review.example"})
    assert denied.status_code == 401 and "?token=" in denied.get_data(as_text=True)
    assert client.get("/?token=wrong").status_code == 401
    assert client.get(f"/episodes/{episode.id}/media/vtt").status_code == 401
    entered = client.get(f"/?token={TOKEN}&filter=approved")
    assert entered.status_code == 303 and entered.location == "/?filter=approved"
    assert client.get("/").status_code == 200  # the session remembers the token
    bearer = client_for(ctx, db, host="0.0.0.0", token=TOKEN)
    assert bearer.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("weak", [
    "ab", "s3cret-token", "x" * 64, "abcdabcdabcdabcdabcdabcdabcdabcdabcd",
    "correct horse battery staple", "0123456789abcdefghijklmnopqrstu"])
def test_weak_tokens_are_refused_at_start_up(ctx: Context, db: StateDB, weak: str) -> None:
    for host in ("0.0.0.0", "127.0.0.1"):
        with pytest.raises(ConfigError, match=r"secrets\.token_urlsafe\(32\)"):
            create_app(ctx, db, host=host, token=weak)
    create_app(ctx, db, host="0.0.0.0", token="7" * 2 + "1234567890" * 3 + "5" * 2)  # digits


def test_cli_refuses_a_short_token_and_takes_an_all_digit_one(workspace_dir: Path) -> None:
    short = learncast(workspace_dir, "review", "--port", "0",
                      env={"LEARNCAST_REVIEW__TOKEN": "ab"}, timeout=60)
    assert short.returncode == 2, short.stderr
    assert "2 characters" in short.stderr and "secrets.token_urlsafe(32)" in short.stderr
    digits = "3141592653589793238462643383279502884197"
    srv = ReviewServer(workspace_dir, env={"LEARNCAST_REVIEW__TOKEN": digits})
    try:
        assert srv.url.endswith(f"?token={digits}")
    finally:
        srv.close()


def test_wrong_tokens_lock_the_address_out(ctx: Context, db: StateDB, episode: Job) -> None:
    now = [1000.0]
    guard = TokenGuard(clock=lambda: now[0])
    app = create_app(ctx, db, host="0.0.0.0", token=TOKEN, guard=guard)
    mallory = app.test_client()
    here = {"REMOTE_ADDR": "203.0.113.9"}
    statuses = [mallory.get(f"/?token=guess-{i}", environ_base=here).status_code
                for i in range(guard.max_failures + 5)]
    assert statuses == [401] * guard.max_failures + [429] * 5
    locked = mallory.get(f"/?token={TOKEN}", environ_base=here)  # even the right one
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "too many wrong tokens" in locked.get_data(as_text=True)
    bearer = mallory.get("/", headers={"Authorization": "Bearer nope"}, environ_base=here)
    assert bearer.status_code == 429
    # the same IPv6 /64 is one client; another address is not affected
    six = app.test_client()
    for i in range(guard.max_failures):
        six.get(f"/?token=g{i}", environ_base={"REMOTE_ADDR": f"2001:db8::{i + 1}"})
    assert six.get("/?token=g", environ_base={"REMOTE_ADDR": "2001:db8::ffff"}).status_code \
        == 429
    other = app.test_client()
    assert other.get(f"/?token={TOKEN}",
                     environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 303
    now[0] += guard.lockout_s + 1
    assert mallory.get(f"/?token={TOKEN}", environ_base=here).status_code == 303
    assert mallory.get("/", environ_base=here).status_code == 200


def test_token_guessing_and_the_access_log_on_a_real_server(workspace_dir: Path,
                                                            make_episode: MakeEpisode) -> None:
    """`learncast review` as started: the token never reaches the log, guessing is stopped."""
    make_episode("video")
    srv = ReviewServer(workspace_dir, env={"LEARNCAST_REVIEW__TOKEN": TOKEN})
    target = urlsplit(srv.url)
    statuses = []
    try:
        conn = http.client.HTTPConnection(str(target.hostname), int(target.port or 80),
                                          timeout=10)
        for path in (f"/?token={TOKEN}", f"/?filter=all&%74oken={TOKEN}",
                     *(f"/?token=guess-{i}" for i in range(40))):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()
    finally:
        srv.close()
    log = srv.proc.stderr.read()  # type: ignore[union-attr]
    assert statuses[:2] == [303, 303]
    assert statuses[2:].count(401) == TokenGuard().max_failures, statuses
    assert statuses[-1] == 429
    assert TOKEN not in log and "guess-3" not in log, log[-2000:]
    assert log.count("token=[redacted]") >= 40, log[-2000:]


def test_plots_render_as_svg(ctx: Context, db: StateDB, episode: Job) -> None:
    job = episode.with_results(timeline=Timeline(source_duration_s=8.0,
                                                 kept=((0.4, 3.0), (3.6, 7.5))))
    db.save(job)
    client = client_for(ctx, db)
    for name in ("reading-speed", "waveform"):
        response = client.get(f"/episodes/{episode.id}/plots/{name}.svg")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "image/svg+xml" and b"<svg" in response.data
    assert b"trimmed" in client.get(f"/episodes/{episode.id}/plots/waveform.svg").data
    files = {k: v for k, v in job.files.items() if k != "master_audio"}
    db.save(job.replace(files=files))
    assert client.get(f"/episodes/{episode.id}/plots/loudness.svg").status_code == 404
    db.save(job.replace(files={**files, "master_audio": job.files["source_audio"]}))
    loud = client.get(f"/episodes/{episode.id}/plots/loudness.svg")
    assert loud.status_code == 200 and b"after normalisation" in loud.data


def test_audio_episode_and_one_without_captions(ctx: Context, db: StateDB,
                                                make_episode: MakeEpisode) -> None:
    audio = make_episode("audio", name="briefing")
    client = client_for(ctx, db)
    page = client.get(f"/episodes/{audio.id}").get_data(as_text=True)
    player = f'<audio id="player" controls preload="metadata" src="/episodes/{audio.id}/media/'
    assert player + 'audio"' in page and 'id="now-caption"' in page
    bare = audio.replace(files={k: v for k, v in audio.files.items()
                                if k not in ("vtt", "json", "qa")})
    db.save(bare)
    response = client.get(f"/episodes/{audio.id}")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "has no captions yet" in text
    assert "Not saved" not in text and "<track" not in text
    assert "No captions yet" in client.get("/").get_data(as_text=True)


def test_rename_and_reassign_a_speaker(ctx: Context, db: StateDB,
                                       make_episode: MakeEpisode) -> None:
    job = make_episode("video", speakers=["Ana", "Ben", "Ben", "Ana"])
    client = client_for(ctx, db)
    page = client.get(f"/episodes/{job.id}").get_data(as_text=True)
    assert 'id="speakers-h">Speakers<' in page and 'id="rename-2"' not in page  # name first
    page = as_reviewer(client, job.id, "Rita")
    assert re.search(r'<label for="rename-2">Rename <strong>Ben</strong> to</label>', page)
    assert re.search(r'<select id="speaker-4" name="speaker">\s*<option selected>Ana</option>'
                     r'<option>Ben</option>', page)
    token = csrf(page)
    form = {"csrf_token": token, "reviewer": "Rita"}
    renamed = client.post(f"/episodes/{job.id}/speakers/rename", data={
        **form, "revision": "1", "speaker": "Ben", "name": "Ben  Okafor"})
    assert renamed.status_code == 303 and renamed.location.endswith("#speakers")
    saved = db.get(job.id)
    assert saved is not None and service.revision(saved) == 2
    vtt = ctx.workspace.abs(saved.files["vtt"]).read_text()
    assert "<v Ben Okafor>Ben Okafor: Today we look at the" in vtt
    assert "<v Ben Okafor>Never type" in vtt and "Ben:" not in vtt and "<v Ben>" not in vtt
    srt = ctx.workspace.abs(saved.files["srt"]).read_text()
    assert "Ben Okafor: Today we look at the" in srt and "Ana: Thanks for listening." in srt
    assert "Ben Okafor: Today" in ctx.workspace.abs(saved.files["txt"]).read_text()
    words = json.loads(ctx.workspace.abs(saved.files["json"]).read_text())["words"]
    assert {w["speaker"] for w in words if w["word"] == "policy."} == {"Ben Okafor"}

    moved = client.post(f"/episodes/{job.id}/cues/4/speaker", data={
        **form, "revision": "2", "speaker": "Ben Okafor"})
    assert moved.status_code == 303 and moved.location.endswith("#cue-4")
    saved = db.get(job.id)
    assert saved is not None and service.revision(saved) == 3
    vtt = ctx.workspace.abs(saved.files["vtt"]).read_text()
    assert "<v Ben Okafor>Thanks for listening." in vtt  # no change of speaker: no name
    assert [r["note"] for r in db.reviews(job.id)] == [
        "renamed speaker Ben to Ben Okafor", "cue 4 said by Ben Okafor"]

    bad = client.post(f"/episodes/{job.id}/speakers/rename", data={
        **form, "revision": "3", "speaker": "Ana", "name": "<v Eve>"})
    assert bad.status_code == 400
    assert "a speaker name cannot contain" in bad.get_data(as_text=True)
    stale = client.post(f"/episodes/{job.id}/cues/1/speaker", data={
        **form, "revision": "2", "speaker": "Ana"})
    assert stale.status_code == 409


def test_a_single_voice_shows_no_speaker_controls(ctx: Context, db: StateDB,
                                                  episode: Job) -> None:
    page = client_for(ctx, db).get(f"/episodes/{episode.id}").get_data(as_text=True)
    assert "Speakers</h3>" not in page and 'name="speaker"' not in page


def test_the_reviewer_is_asked_once_and_remembered(ctx: Context, db: StateDB,
                                                   make_episode: MakeEpisode) -> None:
    job = make_episode("video", speakers=["Ana", "Ben", "Ben", "Ana"])
    client = client_for(ctx, db)
    page = client.get(f"/episodes/{job.id}").get_data(as_text=True)
    # one place asks for the name; nothing can be changed before it is given
    assert page.count('name="reviewer"') == 1 and 'id="reviewer-name"' in page
    assert "Edit cue 1" not in page and 'class="decision"' not in page
    token = csrf(page)
    refused = client.post(f"/episodes/{job.id}/cues/1/merge",
                          data={"csrf_token": token, "revision": "1"})
    assert refused.status_code == 400
    assert "type your name in &#39;Reviewing as&#39;" in refused.get_data(as_text=True)
    assert service.revision(db.get(job.id)) == 1  # type: ignore[arg-type]

    page = as_reviewer(client, job.id, "  Zoë   Ångström ")
    assert page.count('name="reviewer"') == 1, "no form asks for the name again"
    assert 'value="Zoë Ångström"' in page and "Edit cue 4" in page and 'class="decision"' in page
    for path, form in ((f"/episodes/{job.id}/cues/1/edit",
                        {"text": "Welcome, everyone.", "start": "00:00:00.500",
                         "end": "00:00:02.000"}),
                       (f"/episodes/{job.id}/cues/4/speaker", {"speaker": "Ben"}),
                       (f"/episodes/{job.id}/speakers/rename", {"speaker": "Ben",
                                                                 "name": "Ben Okafor"})):
        revision = service.revision(db.get(job.id))  # type: ignore[arg-type]
        done = client.post(path, data={"csrf_token": token, "revision": str(revision), **form})
        assert done.status_code == 303, done.get_data(as_text=True)
    # the browser keeps the name when `learncast review` restarts (a new session key)
    remembered = client.get_cookie("learncast_reviewer")
    assert remembered is not None and remembered.http_only and remembered.max_age
    again = client_for(ctx, db)
    again.set_cookie("learncast_reviewer", remembered.value)
    page = again.get(f"/episodes/{job.id}").get_data(as_text=True)
    assert 'value="Zoë Ångström"' in page and 'class="decision"' in page
    # the form's `next` stays on this site
    away = again.post("/reviewer", data={"csrf_token": csrf(page), "reviewer": "Zoë Ångström",
                                         "next": "//evil.example/x"})
    assert away.status_code == 303 and urlsplit(away.location).netloc in ("", "localhost")
    assert urlsplit(away.location).path == "/"
    # ...and the name is changed in that one place
    page = as_reviewer(again, job.id, "Ana")
    assert 'value="Ana"' in page and page.count('name="reviewer"') == 1
    approved = again.post(f"/episodes/{job.id}/decision", data={
        "csrf_token": csrf(page), "revision": "4", "action": "approve"})
    assert approved.status_code == 303
    assert [(r["reviewer"], r["action"]) for r in db.reviews(job.id)] == [
        ("Zoë Ångström", "edit"), ("Zoë Ångström", "edit"), ("Zoë Ångström", "edit"),
        ("Ana", "approve")]


def test_after_an_edit_of_a_published_episode_the_page_says_which_captions_are_live(
        ctx: Context, db: StateDB, make_episode: MakeEpisode, workspace_dir: Path) -> None:
    from pipeline import runner
    from pipeline.review import cues as cuelib

    job = make_episode("video")
    service.decide(ctx, job.id, action="approve", reviewer="Cy", expected_revision=1)
    runner.work_queue(ctx)
    published = db.get(job.id)
    assert published is not None and published.status is Status.PUBLISHED
    assert service.live_revision(published) == 1 and service.live_note(ctx, published) is None
    client = client_for(ctx, db)
    assert "Learners see" not in client.get(f"/episodes/{job.id}").get_data(as_text=True)

    cues = cuelib.split(service.load_cues(ctx, published), 0, 2, 42)
    edited = service.save_cues(ctx, job.id, cues, reviewer="Cy", expected_revision=1,
                               what="split cue 1")
    assert edited.status is Status.AWAITING_REVIEW
    note = ("Learners see captions revision 1 (published); revision 2 goes live once it is "
            "approved and the episode is republished.")
    assert service.live_note(ctx, edited) == note
    assert note in client.get(f"/episodes/{job.id}").get_data(as_text=True)
    assert "learners see revision 1" in client.get("/").get_data(as_text=True)
    status = learncast(workspace_dir, "status")
    assert "(revision 1 live)" in status.stdout, status.stdout
    assert note in " ".join(status.stdout.split()), status.stdout
    [row] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert row["live_captions_revision"] == 1
    assert row["results"]["publication"]["captions_revision"] == 1

    service.decide(ctx, job.id, action="approve", reviewer="Cy", expected_revision=2)
    runner.work_queue(ctx)
    republished = db.get(job.id)
    assert republished is not None and republished.status is Status.PUBLISHED
    assert service.live_revision(republished) == 2
    assert service.live_note(ctx, republished) is None
    assert "(revision" not in learncast(workspace_dir, "status").stdout


def test_listening_figures_page(ctx: Context, db: StateDB, make_episode: MakeEpisode) -> None:
    import datetime as dt

    job = make_episode("audio", name="briefing")
    assert job.status is Status.PUBLISHED
    today = dt.datetime.now(dt.UTC).date()
    days = [(today - dt.timedelta(days=n)).isoformat() for n in (9, 2, 0)]
    db.downloads_replace(days, [(job.id, days[0], "", 4), (job.id, days[1], "", 3),
                                (job.id, days[2], "", 1)])
    client = client_for(ctx, db)
    page = client.get("/stats").get_data(as_text=True)
    assert "Listening figures are off" in page  # [stats] enabled is false by default...
    row = re.search(r'<a href="#plot-' + job.id + r'">Briefing</a></th>\s*'
                    r'<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>', page)
    assert row and row.groups() == ("8", "4")  # ...what was counted is still shown
    assert f"most on {days[0]} (4)" in page
    svg = client.get(f"/episodes/{job.id}/plots/downloads.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert b"<svg" in svg.data
    assert 'aria-current="page">Listening figures' in page
