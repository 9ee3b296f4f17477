"""Learncast on several machines: Celery workers on Redis, state in PostgreSQL, files in S3.

Real servers and real processes throughout (see `tests.queue.cluster`): workers with their own
workspaces, one `learncast run` that ingests and waits, and faults a deployment meets — a
worker killed mid-stage, the broker restarted, the database away for a moment, a worker
asked to stop, a recording that kills every worker that tries it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import feedparser
import podcastparser
import pytest

from pipeline.crashpoints import MARKER_ENV, PAUSE_AT_ENV
from pipeline.models import Status
from pipeline.runner import stage_names
from tests.queue.cluster import Cluster, wait_for
from tests.storage.s3fixtures import BUCKET, raw_client

CLIP = "jfk.flac"


def drop_recordings(ffmpeg: str, shared_audio: Path, inbox: Path, kinds: list[str]) -> None:
    """Short recordings, each different (so each is an episode): audio as FLAC, MP3 or WAV,
    video as MP4 with a generated picture, cut to a few seconds of the same speech."""
    src = shared_audio / CLIP
    for n, kind in enumerate(kinds):
        seconds = 11 - n % 4
        common = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y"]
        if kind == "video":
            out = inbox / f"briefing-{n}.mp4"
            subprocess.run([*common, "-f", "lavfi", "-i",
                            f"testsrc=size={160 + 16 * n}x120:rate=15", "-i", str(src),
                            "-t", str(seconds), "-map", "0:v", "-map", "1:a", "-c:v",
                            "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a",
                            "aac", "-shortest", str(out)], check=True)
        else:
            ext = ("flac", "mp3", "wav")[n % 3]
            out = inbox / f"podcast-{n}.{ext}"
            subprocess.run([*common, "-i", str(src), "-t", str(seconds), str(out)], check=True)


def stored_keys(prefix: str, endpoint: str) -> list[str]:
    client = raw_client(endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def check_published_once(c: Cluster, endpoint: str, expected: int, videos: int) -> None:
    """Every episode published, once; the feeds valid and listing each once; no working
    copies left in storage."""
    db = c.store()
    try:
        jobs = db.all()
        assert len(jobs) == expected
        assert {j.status for j in jobs} == {Status.PUBLISHED}, [(j.id, j.status, j.error)
                                                                for j in jobs]
        for job in jobs:
            status = db.stage_status(job.id)
            assert all(status[n]["status"] == "done" for n in stage_names()), status
            assert status["publish"]["attempts"] == 1 and status["upload"]["attempts"] == 1
            completed = [e for e in db.events(job.id) if e["kind"] == "completed"]
            assert len(completed) == 1, db.events(job.id)
            assert db.working_copies(job.id) == {}
    finally:
        db.close()
    assert stored_keys("podcasts/learncast-work/", endpoint) == []
    client = raw_client(endpoint)
    for name, count in (("podcast.xml", expected), ("video.xml", videos)):
        body = client.get_object(Bucket=BUCKET,
                                 Key=f"podcasts/feeds/learning-weekly/{name}")["Body"].read()
        feed = feedparser.parse(body)
        assert not feed.bozo, feed.get("bozo_exception")
        guids = [e.id for e in feed.entries]
        assert len(guids) == count == len(set(guids)), guids
        parsed = podcastparser.parse(f"http://x/{name}", __import__("io").BytesIO(body))
        assert len(parsed["episodes"]) == count
        for episode in parsed["episodes"]:
            [enclosure] = episode["enclosures"]
            key = enclosure["url"].split(f"/{BUCKET}/", 1)[1]
            assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == \
                enclosure["file_size"]


@pytest.mark.slow
def test_two_workers_six_recordings_one_killed_during_transcription(
        cluster: Cluster, ffmpeg: str, shared_audio: Path, moto_server: str) -> None:
    c = cluster
    marker = c.root / "paused.txt"
    c.start_worker("w1", env={PAUSE_AT_ENV: "stage:transcribe", MARKER_ENV: str(marker)})
    c.start_worker("w2")
    drop_recordings(ffmpeg, shared_audio, c.coordinator / "inbox",
                    ["audio", "video", "audio", "video", "audio", "video"])
    run = c.run("run")
    wait_for("worker 1 to reach transcription", marker.exists, c)
    paused_pid = int(marker.read_text())
    assert paused_pid == c.workers["w1"].pid  # the solo pool runs the task in the worker
    c.kill_worker("w1")
    out = c.finish(run, timeout=400)
    assert run.returncode == 0, out + c.log_tail()
    assert out.count("published") == 6, out

    check_published_once(c, moto_server, expected=6, videos=3)
    db = c.store()
    try:
        taken_over = [j for j in db.all()
                      if db.stage_status(j.id)["transcribe"]["attempts"] == 2]
        # exactly the episode worker 1 was transcribing: worker 2 took it over, once
        assert len(taken_over) == 1, [(j.id, db.stage_status(j.id)["transcribe"])
                                      for j in db.all()]
        kinds = [e["kind"] for e in db.events(taken_over[0].id)]
        assert "resent" in kinds
    finally:
        db.close()
    # the workers shared nothing with the coordinator: no episode folders there but archive
    assert not list((c.coordinator / "work").glob("*/*"))


def _stages_done(c: Cluster) -> int:
    db = c.store()
    try:
        return sum(1 for j in db.all() for r in db.stage_status(j.id).values()
                   if r["status"] == "done")
    finally:
        db.close()


@pytest.mark.slow
def test_broker_restart_database_outage_and_warm_shutdown(
        cluster: Cluster, ffmpeg: str, shared_audio: Path, moto_server: str) -> None:
    """Redis restarted and PostgreSQL away for a few seconds mid-run: retried, nothing lost.
    Then SIGTERM: the worker finishes the stage it is running, and another takes over."""
    c = cluster
    c.start_worker("w1")
    drop_recordings(ffmpeg, shared_audio, c.coordinator / "inbox", ["audio", "video", "audio"])
    run = c.run("run")
    wait_for("a first finished stage", lambda: _stages_done(c) >= 2, c)
    c.redis.stop()
    time.sleep(2)
    c.redis.start()
    before = _stages_done(c)
    wait_for("progress after the broker restart", lambda: _stages_done(c) >= before + 3, c)
    c.postgres.stop()
    time.sleep(4)
    c.postgres.start()
    before = _stages_done(c)
    wait_for("progress after the database outage", lambda: _stages_done(c) >= before + 3, c)

    db = c.store()
    try:
        def running() -> tuple[str, str] | None:
            for job in db.all():
                for stage, row in db.stage_status(job.id).items():
                    if row["status"] == "running":
                        return job.id, stage
            return None

        wait_for("a stage in progress", lambda: running() is not None, c)
        job_id, stage = running()  # type: ignore[misc]
        w1 = c.workers["w1"]
        os.kill(w1.pid, signal.SIGTERM)
        assert w1.wait(timeout=120) == 0, c.log_tail()
        # warm shutdown: the stage it was running was finished, not abandoned
        assert db.stage_status(job_id)[stage]["status"] == "done", c.log_tail()
        assert run.poll() is None  # the rest waits for a worker
        c.start_worker("w2")
        out = c.finish(run, timeout=400)
        assert run.returncode == 0, out + c.log_tail()
    finally:
        db.close()
    check_published_once(c, moto_server, expected=3, videos=1)


@pytest.mark.slow
def test_a_recording_that_kills_every_worker_fails_with_its_reason(
        cluster: Cluster, ffmpeg: str, shared_audio: Path) -> None:
    """Each attempt at transcription kills the worker process running it (as an out-of-
    memory kill would): after `runner.retry_attempts` attempts the episode fails, saying
    so, instead of going round the workers for ever."""
    c = cluster
    marker = c.root / "paused.txt"
    limit = {"LEARNCAST_RUNNER__RETRY_ATTEMPTS": "2"}
    c.start_worker("w1", "--concurrency", "2",
                   env={**limit, PAUSE_AT_ENV: "stage:transcribe", MARKER_ENV: str(marker)})
    drop_recordings(ffmpeg, shared_audio, c.coordinator / "inbox", ["audio"])
    run = c.run("run", env=limit)
    kills = 0
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        if marker.exists():
            pid = int(marker.read_text())
            marker.unlink()
            assert pid != c.workers["w1"].pid  # a pool process, not the worker itself
            os.kill(pid, signal.SIGKILL)
            kills += 1
        time.sleep(0.1)
    out = c.finish(run, timeout=60)
    assert run.returncode == 1, out + c.log_tail()
    assert kills == 2, (kills, c.log_tail())
    [line] = [x for x in out.splitlines() if "✘" in x]
    assert "started 2 times and never finished" in line
    note = next((c.coordinator / "failed").glob("*.error.txt")).read_text()
    assert "Stage: transcribe" in note and "never finished" in note
    time.sleep(3)
    assert not marker.exists(), "the episode was handed out again after it failed"
    assert c.workers["w1"].poll() is None  # the worker itself lives on


@pytest.mark.slow
def test_watch_keeps_ingesting_and_enqueuing(cluster: Cluster, ffmpeg: str,
                                             shared_audio: Path) -> None:
    """`watch` with a queue ingests what is dropped while it runs, sends it to the workers
    without waiting for it, and stops cleanly on SIGTERM."""
    c = cluster
    c.start_worker("w1")
    watch = c.run("watch")

    def published() -> int:
        db = c.store()
        try:
            return sum(1 for j in db.all() if j.status is Status.PUBLISHED)
        finally:
            db.close()

    drop_recordings(ffmpeg, shared_audio, c.coordinator / "inbox", ["audio"])
    wait_for("the first recording published", lambda: published() == 1, c)
    drop_recordings(ffmpeg, shared_audio, c.coordinator / "inbox", ["video", "video"])
    wait_for("the next recordings published", lambda: published() == 3, c)
    assert watch.poll() is None
    os.killpg(watch.pid, signal.SIGTERM)
    out = c.finish(watch, timeout=60)
    assert watch.returncode == 0, out + c.log_tail()
