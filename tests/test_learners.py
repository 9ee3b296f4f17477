"""Private shows: personal feeds per learner, through the real `serve` (local storage) and
through presigned URLs on a real S3 server (moto), read by a real podcast client
(podcastparser). A valid token gets the feed and every file in it; a revoked, wrong or
malformed one gets the 404 of a missing file — the same bytes, by the same path."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import podcastparser
import pytest

from pipeline import learners, stats
from pipeline.artifacts import Artifact
from pipeline.errors import ConfigError, InputError
from pipeline.feeds.publish import publish_episode, upload_episode
from pipeline.learners import PrivateGate, personalise
from pipeline.models import Job
from pipeline.serve import PublicServer, make_server
from pipeline.stats.logs import AccessLog, read_serve_logs
from pipeline.storage import open_storage
from pipeline.workspace import Context
from tests.conftest import learncast
from tests.feeds.plugin import AddEpisode, make_artwork
from tests.storage.s3fixtures import free_port, raw_client

APP = "AntennaPod/3.4.0"
PRIVATE_SHOW = {"id": "onboarding", "title": "Onboarding (staff only)", "author": "L&D Team",
                "description": "Your first weeks.", "private": True, "learner_stats": True,
                "owner_email": "ld@example.com"}


def publish(ctx: Context, add_episode: AddEpisode, title: str, show: str) -> Job:
    """An episode taken through the real upload and publish code."""
    job = add_episode(title, show=show, upload=False)
    files = {Artifact(k): ctx.workspace.abs(v) for k, v in job.files.items()
             if Artifact(k) in (Artifact.AUDIO, Artifact.VTT, Artifact.SRT, Artifact.HTML)}
    job = upload_episode(ctx, job, files)
    ctx.db.save(job)
    job = publish_episode(ctx, job)
    ctx.db.save(job)
    return job


def fetch(url: str, agent: str = APP) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": agent})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def parse(url: str) -> dict[str, Any]:
    status, _, body = fetch(url)
    assert status == 200
    import io

    return podcastparser.parse(url, io.BytesIO(body))


def feed_links(xml: bytes) -> list[str]:
    """Every URL a feed points at (attributes href, url, uri)."""
    from lxml import etree

    root = etree.fromstring(xml)
    return sorted({v for el in root.iter() for k, v in el.attrib.items()
                   if k in ("href", "url", "uri") and v.startswith("http")})


@pytest.fixture
def served() -> Iterator[Callable[..., PublicServer]]:
    servers: list[PublicServer] = []

    def start(root: Path, port: int = 0, **options: Any) -> PublicServer:
        server = make_server(root, "127.0.0.1", port, **options)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def denied_alike(base: str, paths: list[str]) -> list[tuple[int, bytes, dict[str, str]]]:
    """Status, body and headers (less Date) of each path: what a client can learn."""
    out = []
    for path in paths:
        status, headers, body = fetch(base + path)
        headers.pop("Date", None)
        out.append((status, body, headers))
    return out


def test_personal_feeds_through_serve(make_ctx: Callable[..., Context],
                                      add_episode: AddEpisode, workspace_dir: Path,
                                      served: Callable[..., PublicServer]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = make_ctx(shows=[PRIVATE_SHOW, {"id": "open", "title": "Open Show"}],
                   storage={"public_base_url": base}, stats={"enabled": True})
    make_artwork(workspace_dir / "assets" / "artwork.png")
    job = publish(ctx, add_episode, "Day one", "onboarding")
    public = publish(ctx, add_episode, "Hello world", "open")
    assert all(o.key.startswith("private/onboarding/") for o in job.objects.values())
    ana = learners.add(ctx.db, ctx.settings, "onboarding", "ana@example.com")
    bob = learners.add(ctx.db, ctx.settings, "onboarding", "bob@example.com")
    logs = workspace_dir / "logs"
    access_log = AccessLog(logs, keep_days=30)
    server = served(ctx.workspace.public, port, gate=PrivateGate(ctx.settings, ctx.db),
                    access_log=access_log)
    assert server.url == base

    feed = parse(ana.urls["audio"])
    assert feed["title"] == "Onboarding (staff only)"
    [episode] = feed["episodes"]
    assert episode["title"] == "Day one"
    [enclosure] = episode["enclosures"]
    assert enclosure["url"].startswith(f"{base}/p/{ana.token}/private/onboarding/")
    status, headers, audio = fetch(enclosure["url"])
    local = ctx.workspace.abs(job.files[Artifact.AUDIO]).read_bytes()
    assert status == 200 and audio == local and headers["Content-Type"] == "audio/mpeg"
    assert enclosure["file_size"] == len(local)
    # a player seeking: ranges on the personal URL
    request = urllib.request.Request(enclosure["url"], headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 206 and resp.read() == local[100:200]
    links = feed_links(fetch(ana.urls["audio"])[2])
    assert len(links) >= 6  # self, artwork, enclosure, transcripts...
    for link in links:  # every link in her feed is hers, and works
        assert link.startswith(f"{base}/p/{ana.token}/private/"), link
        assert fetch(link)[0] == 200, link
    assert parse(bob.urls["audio"])["episodes"][0]["title"] == "Day one"
    # nothing of the private show is public, however it is asked for
    feed_key = "private/feeds/onboarding/podcast.xml"
    for path in (feed_key, job.objects[Artifact.AUDIO].key, "feeds/onboarding/podcast.xml"):
        assert fetch(f"{base}/{path}")[0] == 404
    # the public show is served as always
    assert fetch(public.objects[Artifact.AUDIO].url)[0] == 200

    learners.revoke(ctx.db, ctx.settings, "onboarding", "bob@example.com")
    media = job.objects[Artifact.AUDIO].key
    wrong = "x" * len(ana.token)
    tried = denied_alike(base, [
        f"/p/{bob.token}/{feed_key}", f"/p/{wrong}/{feed_key}", f"/p/{bob.token}/{media}",
        f"/p/{wrong}/{media}", f"/p/{ana.token[:-1]}/{feed_key}", "/p/%00/" + feed_key,
        f"/p/{ana.token}/private/feeds/open/podcast.xml",  # not her show
        "/no-such-file.mp3"])
    assert all(t == tried[-1] for t in tried), tried  # learns nothing: a missing file's 404
    assert tried[-1][0] == 404

    # same timing class: a revoked and a wrong token take the same path (one lookup of the
    # token's digest, the same answer); their answer times are compared interleaved, as a
    # ratio of medians, with a generous bound (a different path would be a multiple)
    times: dict[str, list[float]] = {"revoked": [], "wrong": []}
    for n in range(60):
        for kind, token in (("revoked", bob.token), ("wrong", f"{wrong[:-2]}{n:02d}")):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            started = time.perf_counter()
            conn.request("GET", f"/p/{token}/{feed_key}")
            resp = conn.getresponse()
            resp.read()
            times[kind].append(time.perf_counter() - started)
            conn.close()
            assert resp.status == 404
    ratio = statistics.median(times["revoked"]) / statistics.median(times["wrong"])
    assert 0.5 < ratio < 2.0, ratio

    access_log.close()
    text = "".join(p.read_text() for p in logs.glob("access-*.jsonl"))
    assert ana.token not in text and bob.token not in text and wrong[:-2] not in text
    served_to_ana = [r for r in read_serve_logs(logs) if r.learner == ana.learner.id]
    assert {r.key for r in served_to_ana} >= {feed_key, media}
    # per-learner figures (this show enables them): named from the pseudonyms in the log;
    # Bob only read his feed, and the open show is counted per episode only
    stats.refresh(ctx)
    figures = {f.episode_id: f for f in stats.figures(ctx)}
    assert figures[job.id].total == 1 and figures[job.id].learners == {"ana@example.com": 1}
    assert figures[public.id].total == 1 and figures[public.id].learners is None


def test_personal_feeds_on_s3_are_presigned_and_never_public(
        make_ctx: Callable[..., Context], add_episode: AddEpisode, workspace_dir: Path,
        s3_workspace_env: dict[str, str], moto_server: str,
        served: Callable[..., PublicServer]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = make_ctx(shows=[{**PRIVATE_SHOW, "learner_stats": False}],
                   storage={"acl": "public-read"},
                   private={"feed_base_url": base, "presign_seconds": 3600})
    make_artwork(workspace_dir / "assets" / "artwork.png")
    job = publish(ctx, add_episode, "Day one", "onboarding")
    client = raw_client(moto_server)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="learncast-test")["Contents"]]
    assert keys and all(k.startswith("podcasts/private/") for k in keys), keys
    for key in keys:  # storage.acl = public-read, yet no private object is readable by all
        grants = client.get_object_acl(Bucket="learncast-test", Key=key)["Grants"]
        assert not any("AllUsers" in str(g.get("Grantee")) for g in grants), (key, grants)
    ana = learners.add(ctx.db, ctx.settings, "onboarding", "Ana Example")
    gate = PrivateGate(ctx.settings, ctx.db, open_storage(ctx.workspace))
    served(ctx.workspace.public, port, gate=gate)

    assert ana.urls["audio"].startswith(f"{base}/p/")
    feed = parse(ana.urls["audio"])
    [episode] = feed["episodes"]
    [enclosure] = episode["enclosures"]
    url = urlsplit(enclosure["url"])
    assert enclosure["url"].startswith(f"{moto_server}/learncast-test/podcasts/private/")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["3600"] and "X-Amz-Signature" in query
    status, _, audio = fetch(enclosure["url"])
    assert status == 200
    assert audio == ctx.workspace.abs(job.files[Artifact.AUDIO]).read_bytes()
    for link in feed_links(fetch(ana.urls["audio"])[2]):
        if "/feeds/" in link:  # the feed's own URL: her personal one
            assert link == ana.urls["audio"]
        else:
            assert "X-Amz-Signature=" in link and fetch(link)[0] == 200, link
    # the same links on the next refresh (kept for half their lifetime)
    assert fetch(ana.urls["audio"])[2] == fetch(ana.urls["audio"])[2]

    learners.revoke(ctx.db, ctx.settings, "onboarding", "Ana Example")
    tried = denied_alike(base, ["/p/" + ana.token + "/private/feeds/onboarding/podcast.xml",
                                "/p/" + "y" * 32 + "/private/feeds/onboarding/podcast.xml",
                                "/private/feeds/onboarding/podcast.xml",
                                "/podcasts/private/feeds/onboarding/podcast.xml"])
    assert all(t == tried[0] for t in tried) and tried[0][0] == 404


def test_personalise_rewrites_only_private_links_and_escapes() -> None:
    xml = (b'<rss><channel><atom:link href="https://m.example/private/feeds/s/podcast.xml"/>'
           b'<enclosure url="https://m.example/private/s/ep/ep-1.mp3"/>'
           b'<img href="https://m.example/shows/open/art.png"/>'
           b'<a href="https://m.example/private/../etc/passwd"/></channel></rss>')
    out = personalise(xml, "https://m.example/private", lambda k: f"https://x/?k={k}&t=1")
    assert b'href="https://x/?k=private/feeds/s/podcast.xml&amp;t=1"' in out
    assert b'url="https://x/?k=private/s/ep/ep-1.mp3&amp;t=1"' in out
    assert b"https://m.example/shows/open/art.png" in out  # not private: untouched
    assert b"https://m.example/private/../etc/passwd" in out  # not a key: untouched


def test_adding_revoking_and_importing_learners(make_ctx: Callable[..., Context],
                                                tmp_path: Path) -> None:
    ctx = make_ctx(shows=[PRIVATE_SHOW, {"id": "open", "title": "Open Show"}])
    db, settings = ctx.db, ctx.settings
    with pytest.raises(ConfigError, match="not private"):
        learners.add(db, settings, "open", "ana@example.com")
    ana = learners.add(db, settings, "onboarding", "  ana@example.com ")
    assert ana.learner.name == "ana@example.com" and len(ana.token) == 32
    assert ana.token not in json.dumps(db.learners())  # only its digest is kept
    with pytest.raises(InputError, match="--replace"):
        learners.add(db, settings, "onboarding", "ana@example.com")
    again = learners.add(db, settings, "onboarding", "ana@example.com", replace=True)
    assert again.token != ana.token
    assert db.learner_by_token(learners.token_digest(ana.token))["revoked_at"]  # type: ignore[index]
    with pytest.raises(InputError, match="control characters"):
        learners.add(db, settings, "onboarding", "Eve\x1b[31m")
    csv_file = tmp_path / "team.csv"
    csv_file.write_text("Name,Email\nBo,bo@example.com\n,\nCy,cy@example.com\n"
                        "Ana,ana@example.com\n", encoding="utf-8")
    done = learners.import_csv(db, settings, "onboarding", csv_file)
    assert [a.learner.name for a in done.added] == ["bo@example.com", "cy@example.com"]
    assert [name for name, _ in done.skipped] == ["ana@example.com"]
    [gone] = learners.revoke(db, settings, "onboarding", done.added[0].learner.id)
    assert gone.name == "bo@example.com"
    with pytest.raises(InputError, match="no active learner"):
        learners.revoke(db, settings, "onboarding", "bo@example.com")
    active = sorted(r.name for r in learners.listing(db, "onboarding") if not r.revoked_at)
    assert active == ["ana@example.com", "cy@example.com"]


def test_learners_cli(workspace_dir: Path, tmp_path: Path) -> None:
    config = workspace_dir / "config" / "learncast.toml"
    config.write_text(config.read_text().replace("private = false", "private = true"))
    added = learncast(workspace_dir, "learners", "add", "learning-weekly", "ana@example.com")
    assert added.returncode == 0, added.stderr
    assert "/p/" in added.stdout and "/private/feeds/learning-weekly/podcast.xml" in added.stdout
    (tmp_path / "l.csv").write_text("email\nbo@example.com\n")
    imported = learncast(workspace_dir, "learners", "import", "learning-weekly",
                         str(tmp_path / "l.csv"))
    assert imported.returncode == 0 and imported.stdout.startswith("name,learner,feed")
    assert "bo@example.com" in imported.stdout
    listed = learncast(workspace_dir, "learners", "list", "--json")
    assert sorted(r["name"] for r in json.loads(listed.stdout)) == ["ana@example.com",
                                                             "bo@example.com"]
    revoked = learncast(workspace_dir, "learners", "revoke", "learning-weekly", "bo@example.com")
    assert revoked.returncode == 0 and "revoked bo@example.com" in revoked.stdout
    again = learncast(workspace_dir, "learners", "revoke", "learning-weekly", "bo@example.com")
    assert again.returncode == 1 and "no active learner" in again.stderr
    public = learncast(workspace_dir, "learners", "add", "nope", "x@example.com")
    assert public.returncode == 2 and "no show 'nope'" in public.stderr

    # `stats --learners`: per-learner figures by name, only where the show enables them
    from pipeline.state import StateDB
    from pipeline.workspace import open_workspace
    from tests.state.test_store import episode

    ana = next(r for r in json.loads(listed.stdout) if r["name"] == "ana@example.com")
    db = StateDB(open_workspace(workspace_dir).state_db)
    try:
        job = episode(1, show="learning-weekly", title="Day one")
        db.insert(job)
        db.downloads_replace(["2026-11-02"], [(job.id, "2026-11-02", ana["id"], 2),
                                              (job.id, "2026-11-02", "", 3)])
    finally:
        db.close()
    off = learncast(workspace_dir, "stats", "--learners", "--show", "learning-weekly")
    assert off.returncode == 0 and "ana@example.com" not in off.stdout  # learner_stats off
    config.write_text(config.read_text().replace("learner_stats = false", "learner_stats = true"))
    on = learncast(workspace_dir, "stats", "--learners")
    assert on.returncode == 0, on.stderr
    assert f"{job.id} Day one: ana@example.com 2" in on.stdout
    [figures] = json.loads(learncast(workspace_dir, "stats", "--json").stdout)
    assert (figures["downloads"], figures["learners"]) == (5, {"ana@example.com": 2})


def test_serve_cli_with_s3_serves_only_personal_feeds(workspace_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(workspace_dir),
                           "serve"], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "LEARNCAST_STORAGE__BACKEND": "s3",
                               "LEARNCAST_STORAGE__BUCKET": "b"})
    assert done.returncode == 2 and "personal feeds of private shows" in done.stderr
