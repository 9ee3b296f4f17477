"""Counting downloads the way podcast measurement does, from logs of known requests:
repeats within 24 h count once, byte ranges are merged, probes and bots count nothing."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import stats
from pipeline.artifacts import Artifact
from pipeline.stats import Medium, count, is_bot, media_index
from pipeline.stats.logs import AccessLog, Request, parse_s3_line, prune, read_serve_logs
from pipeline.workspace import Context
from tests.conftest import learncast
from tests.feeds.plugin import AddEpisode
from tests.storage.s3fixtures import BUCKET, raw_client

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
SIZE = 600_000  # a 10-minute episode: a minute is 60 000 bytes
EP = Medium("ep1", "weekly", "weekly/ep1/ep1-abc.mp3", SIZE, 60_000)
SHORT = Medium("ep2", "weekly", "weekly/ep2/ep2-def.mp3", 50_000, 50_000)  # under a minute
LEARNERS = Medium("ep3", "onboarding", "private/onboarding/ep3/ep3-0a1.mp3", SIZE, 60_000)
INDEX = {m.key: m for m in (EP, SHORT, LEARNERS)}


def req(minutes: float, client: str, agent: str, span: tuple[int, int] | None = None, *,
        medium: Medium = EP, method: str = "GET", status: int | None = None,
        learner: str | None = None, sent: int | None = None) -> Request:
    first, last = span if span else (0, medium.size - 1)
    return Request(at=T0 + dt.timedelta(minutes=minutes), client=client, agent=agent,
                   method=method, key=medium.key,
                   status=status or (206 if span else 200),
                   sent=(last - first + 1) if sent is None else sent, size=medium.size,
                   first=first, last=last, learner=learner)


APP, OTHER_APP = "AntennaPod/3.4.0", "Overcast/3.0 (+http://overcast.fm/; iOS podcast app)"
KNOWN = [
    # one listener, whole file, then again 2 h later (same window) and 25 h later (a new one)
    req(0, "10.0.0.1", APP), req(120, "10.0.0.1", APP), req(25 * 60, "10.0.0.1", APP),
    # a player fetching in pieces after a 2-byte probe: one download
    req(5, "10.0.0.2", "AppleCoreMedia/1.0.0", (0, 1)),
    req(6, "10.0.0.2", "AppleCoreMedia/1.0.0", (0, 29_999)),
    req(7, "10.0.0.2", "AppleCoreMedia/1.0.0", (30_000, 69_999)),
    # only probes: nothing
    *[req(10 + n, "10.0.0.3", APP, (0, 1)) for n in range(3)],
    # the same 40 000 bytes twice: merged, under a minute: nothing
    req(20, "10.0.0.4", APP, (0, 39_999)), req(21, "10.0.0.4", APP, (0, 39_999)),
    # a whole-file GET cut off after 10 000 bytes: nothing
    req(22, "10.0.0.9", APP, sent=10_000),
    # bots and tools
    req(30, "10.0.0.5", "Mozilla/5.0 (compatible; Googlebot/2.1)"),
    req(31, "10.0.0.5", "curl/8.5.0"), req(32, "10.0.0.5", ""),
    # not downloads: HEAD, 304, 404
    req(40, "10.0.0.6", APP, method="HEAD"), req(41, "10.0.0.6", APP, status=304, sent=0),
    req(42, "10.0.0.6", APP, status=404, sent=0),
    # another app on the same address: another listener
    req(50, "10.0.0.1", OTHER_APP),
    # a 50-second episode needs the whole file
    req(60, "10.0.0.7", APP, (0, 44_999), medium=SHORT),
    req(61, "10.0.0.8", APP, medium=SHORT),
    # two learners behind one address and app (a company proxy): two downloads
    req(70, "10.9.9.9", APP, medium=LEARNERS, learner="l-ana"),
    req(71, "10.9.9.9", APP, medium=LEARNERS, learner="l-bob"),
    req(72, "10.9.9.9", APP, (0, 1), medium=LEARNERS, learner="l-cy"),
]


def test_known_requests_give_known_counts() -> None:
    counts = count(KNOWN, INDEX, window_hours=24, learner_shows={"onboarding"})
    assert counts.downloads == {
        ("ep1", "2026-11-02", ""): 3,  # 10.0.0.1 app, 10.0.0.2 pieces, 10.0.0.1 other app
        ("ep1", "2026-11-03", ""): 1,  # 10.0.0.1 again after 25 h
        ("ep2", "2026-11-02", ""): 1,
        ("ep3", "2026-11-02", "l-ana"): 1, ("ep3", "2026-11-02", "l-bob"): 1,
    }
    assert counts.dropped_bots == 3
    # without per-learner figures the two learners are one client
    plain = count(KNOWN, INDEX, window_hours=24, learner_shows=set())
    assert plain.downloads[("ep3", "2026-11-02", "")] == 1


def test_bots_and_apps() -> None:
    for agent in ("Mozilla/5.0 (compatible; bingbot/2.0)", "facebookexternalhit/1.1",
                  "python-requests/2.31", "Wget/1.21", "", "  "):
        assert is_bot(agent), agent
    for agent in (APP, OTHER_APP, "Podcasts/1650.20 CFNetwork/1333.0.4 Darwin/21.5.0",
                  "PocketCasts/1.0 (Pocket Casts - Android)", "Spotify/8.9.2 Android/33",
                  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120"):
        assert not is_bot(agent), agent


def test_s3_access_log_lines_are_read() -> None:
    line = ('79a59df9 learncast-test [02/Nov/2026:09:00:38 +0000] 192.0.2.3 - 3E57427F '
            'REST.GET.OBJECT podcasts/weekly/ep1/ep1-abc.mp3 "GET /learncast-test/podcasts/'
            'weekly/ep1/ep1-abc.mp3?X-Amz-Signature=abc HTTP/1.1" 206 - 70000 600000 12 4 "-" '
            '"Pod [x] \\"Q\\" Bob\'s/1.0" - hostid SigV4 ECDHE AuthHeader host TLSv1.2')
    got = parse_s3_line(line, prefix="podcasts/")
    assert got is not None
    assert (got.key, got.status, got.sent, got.size, got.client) == (
        "weekly/ep1/ep1-abc.mp3", 206, 70_000, 600_000, "192.0.2.3")
    assert got.agent == 'Pod [x] "Q" Bob\'s/1.0' and got.first is None
    assert got.at == dt.datetime(2026, 11, 2, 9, 0, 38, tzinfo=dt.UTC)
    assert parse_s3_line("garbage") is None
    # without spans, the bytes of a window add up
    pieces = [Request(got.at + dt.timedelta(minutes=m), "192.0.2.3", APP, "GET", EP.key, 206,
                      30_000, SIZE) for m in (0, 1)]
    assert count(pieces, INDEX, window_hours=24, learner_shows=set()).total("ep1") == 1
    assert count(pieces[:1], INDEX, window_hours=24, learner_shows=set()).total("ep1") == 0


def test_access_logs_rotate_daily_and_old_days_are_deleted(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "logs", keep_days=30)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    log.write({"ip": "1.2.3.4", "method": "GET", "path": "/a", "status": 200}, now=old)
    log.write({"ip": "1.2.3.4", "method": "GET", "path": "/a", "status": 200},
              now=old + dt.timedelta(days=1))
    assert len(list((tmp_path / "logs").iterdir())) == 2
    log.write({"ip": "1.2.3.4", "method": "GET", "path": "/p/-/b", "status": 200})
    log.close()
    names = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert names == [f"access-{dt.datetime.now(dt.UTC).date().isoformat()}.jsonl"]
    [record] = read_serve_logs(tmp_path / "logs")
    assert record.key == "b"
    assert prune(tmp_path / "logs", 30) == []


def test_downloads_through_serve_are_counted_and_kept(
        make_ctx: Callable[..., Context], add_episode: AddEpisode, workspace_dir: Path) -> None:
    """Real requests to a real `serve`: its access log gives the counts; they stay in the
    state database when the logs are gone."""
    from pipeline.serve import make_server

    ctx = make_ctx(stats={"enabled": True})
    job = add_episode("Counting", seconds=30.0)
    add_episode("Not listened to")
    logs = ctx.workspace.abs(ctx.settings.stats.access_log)
    server = make_server(ctx.workspace.public, "127.0.0.1", 0,
                         access_log=AccessLog(logs, keep_days=30))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = server.url + "/" + job.objects[Artifact.AUDIO].key
    try:
        def get(agent: str, rng: str | None = None) -> None:
            headers = {"User-Agent": agent, **({"Range": rng} if rng else {})}
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as resp:
                resp.read()

        get(APP)
        get(APP)  # again: the same listener
        get("AppleCoreMedia/1.0.0", "bytes=0-1")
        get("AppleCoreMedia/1.0.0", "bytes=0-")
        get("AppleCoreMedia/1.0.0", "bytes=0-1")  # probes while playing: still one
        get("Mozilla/5.0 (compatible; Googlebot/2.1)")
        get(OTHER_APP, "bytes=0-1")  # only a probe
    finally:
        server.shutdown()
        server.server_close()
    counts = stats.refresh(ctx)
    assert counts.total(job.id) == 2 and counts.dropped_bots == 1
    figures = {f.episode_id: f for f in stats.figures(ctx)}
    assert figures[job.id].total == 2 and figures[job.id].last_7_days == 2
    assert figures[job.id].learners is None
    for path in logs.iterdir():  # the logs are deleted after keep_days...
        path.unlink()
    stats.refresh(ctx)
    assert {f.episode_id: f.total for f in stats.figures(ctx)}[job.id] == 2  # ...the counts stay

    out = learncast(workspace_dir, "stats", "--json", env={"LEARNCAST_STATS__ENABLED": "true"})
    assert out.returncode == 0, out.stderr
    listed = {e["episode"]: e for e in json.loads(out.stdout)}
    assert listed[job.id]["downloads"] == 2
    assert listed[job.id]["daily"] == [{"day": dt.datetime.now(dt.UTC).date().isoformat(),
                                        "downloads": 2}]
    table = learncast(workspace_dir, "stats")
    assert table.returncode == 0 and "Listening figures are off" in table.stdout
    assert job.id in table.stdout


def test_s3_access_logs_are_counted(make_ctx: Callable[..., Context], add_episode: AddEpisode,
                                    s3_workspace_env: dict[str, str], moto_server: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNCAST_STATS__S3_LOGS", f"s3://{BUCKET}/access-logs/")
    ctx = make_ctx()
    from tests.test_learners import publish

    job = publish(ctx, add_episode, "On the bucket", ctx.settings.shows[0].id)
    key = "podcasts/" + job.objects[Artifact.AUDIO].key
    size = job.objects[Artifact.AUDIO].size

    def line(ip: str, agent: str, sent: int, when: str = "02/Nov/2026:09:00:00") -> str:
        return (f'owner {BUCKET} [{when} +0000] {ip} - REQ REST.GET.OBJECT {key} '
                f'"GET /{BUCKET}/{key} HTTP/1.1" 200 - {sent} {size} 5 3 "-" "{agent}" - h '
                'SigV4 ECDHE QueryString host TLSv1.2\n')

    client = raw_client(moto_server)
    client.put_object(Bucket=BUCKET, Key="access-logs/2026-11-02-09-00-00-A", Body=(
        line("192.0.2.1", APP, size) + line("192.0.2.1", APP, size)
        + line("192.0.2.2", "Googlebot/2.1", size)).encode())
    client.put_object(Bucket=BUCKET, Key="access-logs/2026-11-03-10-00-00-B", Body=(
        line("192.0.2.3", OTHER_APP, size, "03/Nov/2026:10:00:00")).encode())
    counts = stats.refresh(ctx)
    assert counts.downloads == {(job.id, "2026-11-02", ""): 1, (job.id, "2026-11-03", ""): 1}
    assert counts.dropped_bots == 1


def test_media_index_needs_a_minute_or_the_whole_file(add_episode: AddEpisode) -> None:
    long, short = add_episode("Long", seconds=120.0), add_episode("Short", seconds=20.0)
    index = media_index([long, short], min_seconds=60)
    by_episode = {m.episode_id: m for m in index.values()}
    assert by_episode[short.id].min_bytes == by_episode[short.id].size
    assert by_episode[long.id].min_bytes == pytest.approx(by_episode[long.id].size / 2, rel=0.02)
