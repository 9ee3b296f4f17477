"""The review page in a real browser: Debian's headless chromium driven by Playwright.

One reviewer's session end to end: the list, an episode, playing to a cue and reading the
caption the browser renders from the track, editing and saving a cue, approving, and the
pipeline then passing the gate. axe-core checks both pages; XSS and CSRF attempts fail.
Screenshots go to tests/.artifacts/review/ for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.models import ChapterMark, SoundbiteResult, Status
from pipeline.review import service
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.conftest import learncast
from tests.review.browser import ReviewServer, axe_violations
from tests.review.conftest import MakeEpisode
from tests.review.test_app import TOKEN

ACTIVE_CUE = """() => {
    const track = document.getElementById('player').textTracks[0];
    return Array.from(track.activeCues || []).map(c => c.getCueAsHTML().textContent).join('|');
}"""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


@pytest.fixture
def server(workspace_dir: Path) -> Iterator[ReviewServer]:
    srv = ReviewServer(workspace_dir)
    yield srv
    srv.close()


def play_cue(page: Any, number: int) -> str:
    """Select a cue's time button (which plays from there) and return the caption the browser
    shows."""
    button = page.get_by_role("button", name=f"Play cue {number}.")
    page.evaluate("() => { const p = document.getElementById('player'); p.pause(); "
                  "p.muted = true; }")
    button.focus()  # keyboard operable: Enter on the focused time button plays the cue
    assert button.evaluate("b => getComputedStyle(b).outlineStyle") == "solid", \
        "the focused button shows a visible focus outline"
    page.keyboard.press("Enter")  # jumps and plays: nothing else starts the player here
    page.wait_for_function(f"() => ({ACTIVE_CUE})().length > 0 && "
                           f"document.getElementById('cue-{number}')"
                           ".getAttribute('aria-current') === 'true'", timeout=20_000)
    page.evaluate("() => document.getElementById('player').pause()")
    return str(page.evaluate(ACTIVE_CUE))


def say_who(page: Any, name: str) -> None:
    """Type the reviewer's name in the page's one 'Reviewing as' field."""
    page.get_by_label("Reviewing as").fill(name)
    page.get_by_role("button", name="Save name").click()
    page.wait_for_selector(f"text=You review as {name}")


def assert_accessible(page: Any, axe_source: str, what: str) -> None:
    violations = axe_violations(page, axe_source)
    assert not violations, f"axe-core found serious/critical issues on the {what}: " \
        f"{violations}"


def test_review_session_in_a_real_browser(ctx: Context, db: StateDB, workspace_dir: Path,
                                          make_episode: MakeEpisode, server: ReviewServer,
                                          page: Any, axe_source: str,
                                          artifacts: Path) -> None:
    job = make_episode("video")
    page.goto(server.url)
    assert page.get_by_role("heading", name="Episodes").is_visible()
    assert_accessible(page, axe_source, "episode list")
    page.screenshot(path=str(artifacts / "list.png"), full_page=True)

    page.get_by_role("link", name="Needs review (1)").click()
    page.get_by_role("link", name="Onboarding").click()
    page.wait_for_url(f"**/episodes/{job.id}")
    assert_accessible(page, axe_source, "episode page")
    # the cue with markup renders as text, from the page and from the track
    assert page.locator("#cue-3 .line").first.inner_text().startswith(
        "Never type <script>alert(1)</script>")
    assert play_cue(page, 3) == "Never type <script>alert(1)</script>\nor </textarea> into forms."
    assert play_cue(page, 2) == "Today we look at the\nexpense policy."
    assert page.locator("#cue-2 mark.low").inner_text().startswith("expense")
    page.screenshot(path=str(artifacts / "episode.png"), full_page=False)

    say_who(page, "Ana Reviewer")
    page.get_by_text("Edit cue 2", exact=True).click()
    page.fill("#text-2", "Today we look at the\ntravel expense policy.")
    page.get_by_role("button", name="Save cue 2").click()
    page.wait_for_selector("text=Saved: edited cue 2")
    saved = db.get(job.id)
    assert saved is not None and service.revision(saved) == 2
    assert saved.measurements["review_edit_distance_words"] == 1
    vtt = ctx.workspace.abs(saved.files["vtt"]).read_text()
    assert "Today we look at the\ntravel expense policy." in vtt
    assert "expense policy." in ctx.workspace.abs(saved.files["asr_vtt"]).read_text()
    assert "travel expense" in ctx.workspace.abs(saved.files["srt"]).read_text()
    assert play_cue(page, 2) == "Today we look at the\ntravel expense policy."

    # the reviewer types markup: it stays text everywhere, no script runs
    page.get_by_text("Edit cue 1", exact=True).click()
    page.fill("#text-1", '<img src=x onerror="alert(2)"> Welcome!')
    page.get_by_role("button", name="Save cue 1").click()
    page.wait_for_selector("text=Saved: edited cue 1")
    assert page.locator("#cue-1 .line").first.inner_text().startswith(
        '<img src=x onerror="alert(2)"> Welcome!')
    assert play_cue(page, 1) == '<img src=x onerror="alert(2)"> Welcome!'
    assert page.locator("img[src=x]").count() == 0
    assert page.dialogs == []

    page.get_by_text("Edit cue 4", exact=True).click()
    page.fill("#split-4", "2")
    page.get_by_role("button", name="Split cue 4").click()
    page.wait_for_selector("text=Saved: split cue 4 after word 2")
    assert page.locator("#cue-5 .line").first.inner_text().startswith("listening.")

    page.get_by_role("button", name="Approve revision 4").click()
    page.wait_for_selector("text=Approved captions revision 4")
    assert_accessible(page, axe_source, "episode page after approval")
    page.screenshot(path=str(artifacts / "approved.png"), full_page=True)
    approved = db.get(job.id)
    assert approved is not None and approved.status is Status.QUEUED
    assert [(r["action"], r["revision"], r["reviewer"]) for r in db.reviews(job.id)] == [
        ("edit", 2, "Ana Reviewer"), ("edit", 3, "Ana Reviewer"), ("edit", 4, "Ana Reviewer"),
        ("approve", 4, "Ana Reviewer")]
    assert approved.measurements["caption_cues"] == 5

    done = learncast(workspace_dir, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    after = db.get(job.id)
    assert after is not None and db.stage_status(job.id)["review"]["status"] == "done"
    assert after.results.review is not None and after.results.review.reviewer == "Ana Reviewer"
    assert after.results.review.revision == 4


def test_cross_site_form_posts_are_refused(db: StateDB, make_episode: MakeEpisode,
                                           server: ReviewServer, page: Any,
                                           tmp_path: Path) -> None:
    job = make_episode("video")
    page.goto(server.url)  # the reviewer has a session with the review page
    target = f"{server.url.rstrip('/')}/episodes/{job.id}/decision"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(
        f'<!DOCTYPE html><form id="f" method="post" action="{target}">'
        '<input name="action" value="approve"><input name="reviewer" value="Mallory">'
        '<input name="revision" value="1"><input name="csrf_token" value="guess"></form>'
        '<script>document.getElementById("f").submit()</script>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(evil))
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_port}/index.html")
        page.wait_for_url(target)
        assert "403" in page.title()
        assert page.get_by_role("alert").inner_text() in (
            "this request came from another site, so it was refused",
            "the form's security token is missing or stale; reload the page and try again")
    finally:
        attacker.shutdown()
    assert db.reviews(job.id) == []
    assert db.get(job.id).status is Status.AWAITING_REVIEW  # type: ignore[union-attr]


def test_a_token_protects_the_page_off_loopback(workspace_dir: Path, make_episode: MakeEpisode,
                                                browser: Any) -> None:
    make_episode("video")
    refused = learncast(workspace_dir, "review", "--host", "0.0.0.0", "--port", "0",
                        timeout=60)
    assert refused.returncode == 2 and "LEARNCAST_REVIEW__TOKEN" in refused.stderr
    srv = ReviewServer(workspace_dir, "--host", "0.0.0.0",
                       env={"LEARNCAST_REVIEW__TOKEN": TOKEN})
    try:
        assert srv.url.endswith(f"?token={TOKEN}")
        context = browser.new_context()
        page = context.new_page()
        bare = srv.url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
        response = page.goto(bare)
        assert response.status == 401
        response = page.goto(srv.url.replace("0.0.0.0", "127.0.0.1"))
        assert response.status == 200 and page.url == bare  # token moved into the session
        assert page.get_by_role("link", name="Onboarding").is_visible()
        context.close()
    finally:
        srv.close()


def test_audio_episodes_show_the_current_caption_as_text(make_episode: MakeEpisode,
                                                         server: ReviewServer, page: Any,
                                                         axe_source: str) -> None:
    job = make_episode("audio", name="briefing")
    page.goto(f"{server.url.rstrip('/')}/episodes/{job.id}")
    assert play_cue(page, 2) == "Today we look at the\nexpense policy."
    page.wait_for_function("() => document.getElementById('now-caption').textContent"
                           ".includes('expense policy.')")
    assert_accessible(page, axe_source, "audio episode page")


def test_a_reviewer_renames_and_reassigns_speakers(ctx: Context, db: StateDB,
                                                   make_episode: MakeEpisode,
                                                   server: ReviewServer, page: Any,
                                                   axe_source: str, artifacts: Path) -> None:
    job = make_episode("video", speakers=["Speaker 1", "Speaker 2", "Speaker 2", "Speaker 1"])
    page.goto(f"{server.url.rstrip('/')}/episodes/{job.id}")
    assert_accessible(page, axe_source, "episode page with speakers")
    assert page.locator("#cue-2 .speaker").inner_text() == "Speaker 2:"
    # the browser's caption shows who speaks where the speaker changes
    assert play_cue(page, 2) == "Speaker 2: Today we look at the\nexpense policy."
    assert play_cue(page, 3).startswith("Never type")

    say_who(page, "Rita")
    page.get_by_label("Rename Speaker 2 to").fill("Ben Okafor")
    page.get_by_role("button", name="Rename Speaker 2").click()
    page.wait_for_selector("text=Saved: renamed speaker Speaker 2 to Ben Okafor")
    assert page.locator("#cue-2 .speaker").inner_text() == "Ben Okafor:"
    assert page.locator("#cue-3 .speaker").inner_text() == "Ben Okafor:"
    assert play_cue(page, 2) == "Ben Okafor: Today we look at the\nexpense policy."

    page.get_by_text("Edit cue 4", exact=True).click()
    page.get_by_label("Speaker of cue 4").select_option("Ben Okafor")
    page.get_by_role("button", name="Set speaker of cue 4").click()
    page.wait_for_selector("text=Saved: cue 4 said by Ben Okafor")
    assert page.locator("#cue-4 .speaker").inner_text() == "Ben Okafor:"
    assert_accessible(page, axe_source, "episode page after renaming a speaker")
    page.locator("#speakers").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "speakers.png"), full_page=False)
    saved = db.get(job.id)
    assert saved is not None and service.revision(saved) == 3
    vtt = ctx.workspace.abs(saved.files["vtt"]).read_text()
    assert vtt.count("<v Ben Okafor>") == 3 and vtt.count("Ben Okafor: ") == 1

def test_suggested_chapters_are_accepted_from_the_keyboard(
        db: StateDB, workspace_dir: Path, make_episode: MakeEpisode, server: ReviewServer,
        page: Any, axe_source: str, artifacts: Path) -> None:
    job = make_episode("video")
    clip = workspace_dir / "work" / job.id / "clip.mp3"
    clip.write_bytes((workspace_dir / job.files["audio"]).read_bytes())
    db.save(job.with_file("soundbite_1", f"work/{job.id}/clip.mp3").with_results(
        chapters=[ChapterMark(start=0.0, end=4.2, title="Onboarding", suggested=True),
                  ChapterMark(start=4.2, end=8.0, title="Expense policy", suggested=True)],
        soundbites=[SoundbiteResult(start=2.2, duration=15.0, title="The expense policy",
                                    origin="transcript")]))
    page.goto(f"{server.url.rstrip('/')}/episodes/{job.id}")
    say_who(page, "Ana")
    assert_accessible(page, axe_source, "episode page with chapters and soundbites")
    assert page.get_by_role("heading", name="Soundbites").is_visible()
    page.get_by_label("Title of chapter 2").fill("The expense policy")
    page.get_by_role("button", name="Accept chapters").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/episodes/{job.id}#chapters")
    assert page.get_by_role("button", name="Save chapters").is_visible()
    # the page shows what was accepted (no longer suggested) before the pipeline runs again
    assert page.get_by_label("Title of chapter 2").input_value() == "The expense policy"
    assert page.locator("form.chapters").get_by_text("suggested").count() == 0
    page.screenshot(path=str(artifacts / "chapters.png"), full_page=True)
    stored = db.get(job.id)
    assert stored is not None and stored.results.chapter_review is not None
    assert [c.title for c in stored.results.chapter_review.chapters] == [
        "Onboarding", "The expense policy"]


#: A long episode: 30 cues over 40 s, so cue 15 lies far below the player.
LONG_CUES = [(0.5 + k * 1.3, 1.6 + k * 1.3, (f"This is cue number {k + 1} of a long episode.",))
             for k in range(30)]
LONG_NOTE = ("names must match the style guide: https://intranet.example.com/style-guide/"
             "captions/speaker-names-and-job-titles-in-training-videos-section-4")
PLAYER_STATE = "() => { const p = document.getElementById('player'); " \
    "return {paused: p.paused, t: p.currentTime}; }"
FOCUSED_CUE = "() => document.activeElement.closest('li.cue')?.id || null"


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two Playwright bounding boxes intersect."""
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def assert_player_in_view(page: Any, what: str) -> None:
    box = page.locator("#player").bounding_box()
    height = page.evaluate("() => window.innerHeight")
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, \
        f"the player is out of view {what}: {box}, viewport height {height}"


def assert_audit_beside_the_cues(page: Any, what: str) -> None:
    table = page.locator("table.audit").bounding_box()
    cues = page.locator("section.cues").bounding_box()
    assert table is not None and cues is not None
    assert not overlap(table, cues), f"the audit table {table} runs into the cues {cues} {what}"
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), \
        f"the page scrolls sideways {what}"


def test_a_long_episode_from_the_keyboard_with_the_player_in_view(
        db: StateDB, make_episode: MakeEpisode, server: ReviewServer, page: Any,
        axe_source: str, artifacts: Path) -> None:
    job = make_episode("video", seconds=41.0, cues=LONG_CUES)
    db.add_review(job.id, "Maximiliane Featherstonehaugh-Cholmondeley", "request-changes", 1,
                  LONG_NOTE, "")
    page.goto(f"{server.url.rstrip('/')}/episodes/{job.id}")
    # the name is asked once, in one place; nothing else asks for it
    assert page.locator("input[name=reviewer]").count() == 1
    assert page.get_by_text("Edit cue 15", exact=True).count() == 0
    say_who(page, "Ana Reviewer")
    assert page.locator("input[name=reviewer]").count() == 1
    assert page.get_by_label("Reviewing as").input_value() == "Ana Reviewer"
    assert_accessible(page, axe_source, "long episode page")
    assert_audit_beside_the_cues(page, "at 1280 px")
    page.screenshot(path=str(artifacts / "long-top.png"), full_page=False)

    # editing cue 15, far down the page: the player stays in view
    page.get_by_text("Edit cue 15", exact=True).click()
    page.locator("#text-15").scroll_into_view_if_needed()
    assert page.evaluate("() => window.scrollY") > 800, "cue 15 lies well below the player"
    assert_player_in_view(page, "while editing cue 15")
    page.screenshot(path=str(artifacts / "long-cue-15.png"), full_page=False)

    # letter keys type into the field, they do not drive the player...
    page.evaluate("() => { document.getElementById('player').muted = true; }")
    before = page.evaluate(PLAYER_STATE)
    page.locator("#text-15").press("End")
    page.locator("#text-15").type(" jkl?")
    assert page.locator("#text-15").input_value().endswith(" jkl?")
    assert page.evaluate(PLAYER_STATE) == before
    assert page.locator("#shortcuts").get_attribute("open") is None
    # ...and Ctrl+S saves from the text field
    page.locator("#text-15").press("Control+s")
    page.wait_for_selector("text=Saved: edited cue 15")
    assert page.locator("#cue-15 .line").first.inner_text().startswith(
        "This is cue number 15 of a long episode. jkl?")
    assert [(r["reviewer"], r["action"]) for r in db.reviews(job.id)][-1] == (
        "Ana Reviewer", "edit")
    assert page.evaluate("() => window.scrollY") > 800  # back at cue 15 (the anchor)
    assert_player_in_view(page, "after saving cue 15")

    # shortcuts outside text fields: next/previous cue, play/pause, help
    page.evaluate("() => { document.activeElement.blur(); const p = "
                  "document.getElementById('player'); p.muted = true; p.currentTime = 0; }")
    page.keyboard.press("l")
    assert page.evaluate(FOCUSED_CUE) == "cue-1"
    page.keyboard.press("l")
    page.keyboard.press("l")
    assert page.evaluate(FOCUSED_CUE) == "cue-3"
    assert abs(page.evaluate(PLAYER_STATE)["t"] - LONG_CUES[2][0]) < 0.1
    page.keyboard.press("j")
    assert page.evaluate(FOCUSED_CUE) == "cue-2"
    assert page.evaluate(PLAYER_STATE)["paused"]
    page.keyboard.press("k")
    page.wait_for_function("() => !document.getElementById('player').paused")
    page.keyboard.press("k")
    page.wait_for_function("() => document.getElementById('player').paused")
    help_list = page.get_by_text("Previous / next cue", exact=False)
    assert not help_list.is_visible()
    page.keyboard.press("?")
    assert help_list.is_visible(), "? shows the shortcut help"
    page.keyboard.press("?")
    assert not help_list.is_visible()
    page.get_by_text("Keyboard shortcuts", exact=True).click()  # visible without the key too
    assert help_list.is_visible()
    page.get_by_label("Letter shortcuts on").uncheck()
    page.evaluate("() => document.activeElement.blur()")
    page.keyboard.press("l")
    assert page.evaluate(FOCUSED_CUE) is None, "letter shortcuts can be turned off"
    page.get_by_label("Letter shortcuts on").check()

    # clicking a cue's time jumps there and plays
    page.get_by_role("button", name="Play cue 20.").click()
    page.wait_for_function("() => !document.getElementById('player').paused")
    state = page.evaluate(PLAYER_STATE)
    assert LONG_CUES[19][0] <= state["t"] < LONG_CUES[19][1] + 0.5
    page.wait_for_function("() => document.getElementById('cue-20')"
                           ".getAttribute('aria-current') === 'true'")
    page.evaluate("() => document.getElementById('player').pause()")
    assert_accessible(page, axe_source, "long episode page with the shortcut help open")

    # a narrow window: one column, the player still in view, the audit table inside it
    page.set_viewport_size({"width": 700, "height": 900})
    page.goto(f"{server.url.rstrip('/')}/episodes/{job.id}")
    assert_audit_beside_the_cues(page, "at 700 px")
    page.get_by_text("Edit cue 15", exact=True).click()
    page.locator("#text-15").focus()
    assert page.evaluate("() => window.scrollY") > 800
    assert_player_in_view(page, "at 700 px")
    text = page.locator("#text-15").bounding_box()
    player = page.locator("#player-box").bounding_box()
    assert text is not None and player is not None and not overlap(text, player), \
        "the field being edited is not hidden under the player"
    page.screenshot(path=str(artifacts / "long-narrow.png"), full_page=False)
    assert_accessible(page, axe_source, "long episode page at 700 px")


def test_listening_figures_page_is_accessible(db: StateDB, make_episode: MakeEpisode,
                                              server: ReviewServer, page: Any,
                                              axe_source: str, artifacts: Path) -> None:
    import datetime as dt

    job = make_episode("audio", name="briefing")
    today = dt.datetime.now(dt.UTC).date()
    days = [(today - dt.timedelta(days=n)).isoformat() for n in (9, 1)]
    db.downloads_replace(days, [(job.id, days[0], "", 5), (job.id, days[1], "", 2)])
    page.goto(server.url)
    page.get_by_role("link", name="Listening figures").click()
    page.wait_for_url("**/stats")
    assert page.get_by_role("heading", name="Listening figures", level=1).is_visible()
    table = page.get_by_role("table", name="Downloads of Learning Weekly: 1 episode")
    assert table.get_by_role("cell", name="7", exact=True).is_visible()  # in all
    assert table.get_by_role("cell", name="2", exact=True).is_visible()  # in the last 7 days
    plot = page.get_by_role("img", name=f"Downloads per day of Briefing: 7 in total, most on "
                                        f"{days[0]} (5)")
    plot.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=plot.element_handle())
    assert_accessible(page, axe_source, "listening figures page")
    page.screenshot(path=str(artifacts / "stats.png"), full_page=True)
