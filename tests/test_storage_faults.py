"""Storage faults through the whole runner (`learncast run`), not just the storage layer.

An episode is published first; then the storage misbehaves for the next one: S3 unreachable,
too slow (read timeouts), 500/503 for a while, a local disk that is full. Each time the
episode is retried or fails with a message naming the cause, and the feed that was already
published stays valid XML whose every enclosure is an object that really exists. After the
fault is gone, `learncast retry` finishes the episode.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest

from pipeline.state import StateDB
from tests.conftest import learncast
from tests.storage.s3fixtures import BUCKET, REGION, FaultProxy, free_port, raw_client

FAST = {"LEARNCAST_TRANSCRIBE__ENGINE": "faster-whisper"}


def s3_env(endpoint: str, moto: str, **extra: str) -> dict[str, str]:
    return {**FAST, "LEARNCAST_STORAGE__BACKEND": "s3", "LEARNCAST_STORAGE__BUCKET": BUCKET,
            "LEARNCAST_STORAGE__ENDPOINT_URL": endpoint, "LEARNCAST_STORAGE__REGION": REGION,
            "LEARNCAST_STORAGE__ADDRESSING_STYLE": "path",
            # URLs in the feed must not depend on which endpoint (proxy or not) was used
            "LEARNCAST_STORAGE__PUBLIC_BASE_URL": f"{moto}/{BUCKET}",
            "LEARNCAST_STORAGE__MAX_ATTEMPTS": "1", "LEARNCAST_STORAGE__TIMEOUT_S": "1",
            "LEARNCAST_RUNNER__RETRY_ATTEMPTS": "3", **extra}


def episodes(ws: Path) -> dict[str, dict]:
    proc = learncast(ws, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {e["source"]: e for e in json.loads(proc.stdout)}


def s3_feed_entries(moto: str) -> int:
    """Entries of the published feed; asserts it parses and every enclosure is stored."""
    client = raw_client(moto)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    [feed_key] = [k for k in keys if k.endswith("podcast.xml")]
    body = client.get_object(Bucket=BUCKET, Key=feed_key)["Body"].read()
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.get("bozo_exception")
    for entry in feed.entries:
        for enclosure in entry.enclosures:
            key = enclosure["href"].removeprefix(f"{moto}/{BUCKET}/")
            assert key in keys, f"the feed points at {key}, which is not stored"
    return len(feed.entries)


def local_feed_entries(ws: Path) -> int:
    [feed_file] = list((ws / "public").rglob("podcast.xml"))
    feed = feedparser.parse(feed_file.read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    base = "http://localhost:8000/"
    for entry in feed.entries:
        for enclosure in entry.enclosures:
            key = enclosure["href"].split("/", 3)[3] if enclosure["href"].startswith(
                "http") else enclosure["href"].removeprefix(base)
            assert (ws / "public" / key).is_file(), f"the feed points at missing {key}"
    return len(feed.entries)


@pytest.fixture
def first_episode(workspace_dir: Path, tone) -> Callable[[dict[str, str]], Path]:
    """Publish one episode with healthy storage; return the workspace."""

    def publish(env: dict[str, str]) -> Path:
        tone(workspace_dir / "inbox" / "first.wav", seconds=2, freq=330)
        proc = learncast(workspace_dir, "run", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return workspace_dir

    return publish


def second_run(ws: Path, tone, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tone(ws / "inbox" / "second.wav", seconds=2, freq=550)
    return learncast(ws, "run", env=env)


def retry_second(ws: Path, env: dict[str, str]) -> None:
    ep = episodes(ws)["second.wav"]
    assert learncast(ws, "retry", ep["id"], env=env).returncode == 0
    proc = learncast(ws, "run", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert episodes(ws)["second.wav"]["status"] == "published"
    assert not (ws / "failed" / "second.wav.error.txt").exists()


@pytest.mark.slow
def test_s3_unreachable_fails_after_retries_then_retry_publishes(
        moto_server: str, s3_bucket: str, first_episode, tone) -> None:
    ws = first_episode(s3_env(moto_server, moto_server))
    assert s3_feed_entries(moto_server) == 1
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = second_run(ws, tone, s3_env(closed, moto_server))
    assert proc.returncode == 1
    ep = episodes(ws)["second.wav"]
    assert (ep["status"], ep["stage"]) == ("failed", "upload")
    note = (ws / "failed" / "second.wav.error.txt").read_text()
    assert "storage.endpoint_url" in note and "gave up after 3 attempts" in note
    assert f"learncast retry {ep['id']}" in note
    assert s3_feed_entries(moto_server) == 1, "the published feed changed"
    retry_second(ws, s3_env(moto_server, moto_server))
    assert s3_feed_entries(moto_server) == 2


@pytest.mark.slow
def test_s3_too_slow_times_out_and_is_retried(moto_server: str, s3_bucket: str,
                                              first_episode, tone) -> None:
    ws = first_episode(s3_env(moto_server, moto_server))
    with FaultProxy(moto_server, lambda *_: "slow") as proxy:
        proc = second_run(ws, tone, s3_env(proxy.url, moto_server))
    assert proc.returncode == 1
    ep = episodes(ws)["second.wav"]
    assert (ep["status"], ep["stage"]) == ("failed", "upload")
    assert "timeout" in ep["error"].lower() and "storage.endpoint_url" in ep["error"]
    assert "gave up after 3 attempts" in ep["error"]
    assert s3_feed_entries(moto_server) == 1
    retry_second(ws, s3_env(moto_server, moto_server))
    assert s3_feed_entries(moto_server) == 2


@pytest.mark.slow
@pytest.mark.parametrize("status", ["500", "503"])
def test_s3_errors_for_a_while_then_recovery(status: str, moto_server: str, s3_bucket: str,
                                            first_episode, tone) -> None:
    ws = first_episode(s3_env(moto_server, moto_server))
    failing = {"left": 2}

    def outage(method: str, _path: str, _n: int) -> str | None:
        # the first two PUTs fail: the first attempt at upload dies, the runner's retry works
        if method == "PUT" and failing["left"] > 0:
            failing["left"] -= 1
            return status
        return None

    with FaultProxy(moto_server, outage) as proxy:
        proc = second_run(ws, tone, s3_env(proxy.url, moto_server))
        assert proxy.count(outcome=status) == 2
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert episodes(ws)["second.wav"]["status"] == "published"
    db = StateDB(ws / "state" / "learncast.db")
    try:
        kinds = [e["kind"] for e in db.events(episodes(ws)["second.wav"]["id"])]
    finally:
        db.close()
    assert kinds.count("retry") == 2, kinds  # two failed upload attempts, the third works
    assert s3_feed_entries(moto_server) == 2


@pytest.mark.slow
def test_s3_access_denied_fails_at_once_naming_the_credentials(
        moto_server: str, s3_bucket: str, first_episode, tone) -> None:
    ws = first_episode(s3_env(moto_server, moto_server))
    deny = lambda method, _p, _n: "403" if method == "PUT" else None  # noqa: E731
    with FaultProxy(moto_server, deny) as proxy:
        proc = second_run(ws, tone, s3_env(proxy.url, moto_server))
        assert proxy.count("PUT") == 1, "a permanent fault is not retried"
    assert proc.returncode == 1
    ep = episodes(ws)["second.wav"]
    assert (ep["status"], ep["stage"]) == ("failed", "upload")
    assert "AccessDenied" in ep["error"] and "AWS_ACCESS_KEY_ID" in ep["error"]
    assert s3_feed_entries(moto_server) == 1


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real, tiny filesystem at `folder` (needs root: CI and this sandbox run as root)."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test ({proc.stderr.strip()}); "
                    "this test needs root (mount -t tmpfs)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler until the filesystem is full (ENOSPC); return it."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: ENOSPC surfaces in write()
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)
    return filler


@pytest.mark.slow
def test_local_disk_full_fails_clearly_and_the_feed_stays_whole(workspace_dir: Path,
                                                                tone) -> None:
    ws = workspace_dir
    with tmpfs(ws / "public", "2m"):
        tone(ws / "inbox" / "first.wav", seconds=2, freq=330)
        assert learncast(ws, "run", env=FAST).returncode == 0
        assert local_feed_entries(ws) == 1
        filler = fill(ws / "public")
        proc = second_run(ws, tone, FAST)
        assert proc.returncode == 1
        ep = episodes(ws)["second.wav"]
        assert (ep["status"], ep["stage"]) == ("failed", "upload")
        note = (ws / "failed" / "second.wav.error.txt").read_text()
        assert "No space left on device" in note and "free space" in note
        assert local_feed_entries(ws) == 1
        assert not list((ws / "public").rglob("*.learncast-tmp-*"))
        filler.unlink()
        retry_second(ws, FAST)
        assert local_feed_entries(ws) == 2
