"""The runner: stage order, resume after a crash, retries, failures, concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import runner
from pipeline.crashpoints import MARKER_ENV, PAUSE_AT_ENV
from pipeline.errors import PipelineError, RetryableError
from pipeline.fsutil import TEMP_MARKER
from pipeline.models import Job, Status
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.conftest import REPO, TEST_ENV, learncast


def status_json(ws: Path) -> list[dict]:
    proc = learncast(ws, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_retryable_errors_are_retried_then_succeed(ctx: Context, db: StateDB, tone,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def flaky(job: Job, _ctx: Context) -> Job:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryableError("storage timed out")
        return job.with_measurements(flaky_ok=True)

    monkeypatch.setattr(runner, "STAGES", (*runner.STAGES, runner.Stage("flaky", flaky)))
    tone(ctx.workspace.inbox / "a.wav", seconds=2)
    report = runner.process_inbox(ctx)
    assert report.exit_code == 0 and len(calls) == 3
    [job] = db.all()
    assert job.measurements["flaky_ok"] is True
    assert db.stage_status(job.id)["flaky"]["attempts"] == 3
    assert [e["kind"] for e in db.events(job.id)].count("retry") == 2


def test_retryable_errors_give_up_after_the_configured_attempts(
        ctx: Context, db: StateDB, tone, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(job: Job, _ctx: Context) -> Job:
        raise RetryableError("storage unreachable; check storage.endpoint_url")

    monkeypatch.setattr(runner, "STAGES", (*runner.STAGES, runner.Stage("upload", down)))
    tone(ctx.workspace.inbox / "a.wav", seconds=2)
    report = runner.process_inbox(ctx)
    assert report.exit_code == 1
    [job] = db.all()
    assert job.status is Status.FAILED and job.stage == "upload"
    assert f"gave up after {ctx.settings.runner.retry_attempts} attempts" in (job.error or "")
    note = (ctx.workspace.failed / "a.wav.error.txt").read_text()
    assert "storage.endpoint_url" in note and f"learncast retry {job.id}" in note
    # the original is reachable from failed/ and still archived
    assert (ctx.workspace.failed / "a.wav").read_bytes() == \
        ctx.workspace.abs(job.original).read_bytes()


def test_failure_then_retry_resumes_at_the_failed_stage(
        ctx: Context, db: StateDB, tone, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {"on": True}
    ran: list[str] = []

    def first(job: Job, _ctx: Context) -> Job:
        ran.append("first")
        return job

    def second(job: Job, _ctx: Context) -> Job:
        ran.append("second")
        if broken["on"]:
            raise PipelineError("the intro file assets/intro.wav is missing; add it")
        return job

    monkeypatch.setattr(runner, "STAGES", (*runner.STAGES, runner.Stage("first", first),
                                           runner.Stage("second", second)))
    tone(ctx.workspace.inbox / "a.wav", seconds=2)
    assert runner.process_inbox(ctx).exit_code == 1
    [job] = db.all()
    assert (job.status, job.stage) == (Status.FAILED, "second")
    broken["on"] = False
    ran.clear()
    runner.retry(ctx, job)
    assert runner.process_inbox(ctx).exit_code == 0
    assert ran == ["second"], "completed stages are not redone"
    assert db.all()[0].status is Status.PUBLISHED  # audio: review "immediate" by default
    assert not (ctx.workspace.failed / "a.wav.error.txt").exists()
    assert not (ctx.workspace.failed / "a.wav").exists()
    assert ctx.workspace.abs(job.original).exists()


def test_unexpected_exception_fails_only_that_episode(
        ctx: Context, db: StateDB, tone, monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(job: Job, _ctx: Context) -> Job:
        if job.source == "bad.wav":
            raise ZeroDivisionError("oops")
        return job

    monkeypatch.setattr(runner, "STAGES", (*runner.STAGES, runner.Stage("buggy", buggy)))
    tone(ctx.workspace.inbox / "bad.wav", seconds=2, freq=300)
    tone(ctx.workspace.inbox / "good.wav", seconds=2, freq=500)
    report = runner.process_inbox(ctx)
    statuses = {o.source: o.status for o in report.processed}
    assert statuses == {"bad.wav": Status.FAILED, "good.wav": Status.PUBLISHED}
    assert "internal error in stage 'buggy'" in (db.all()[0].error or db.all()[1].error or "")


def test_kill_9_mid_stage_resumes_without_duplicates(workspace_dir: Path, tone,
                                                     tmp_path: Path) -> None:
    src = tone(workspace_dir / "inbox" / "briefing.wav", seconds=3)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    marker = tmp_path / "paused"
    env = {**os.environ, **TEST_ENV, PAUSE_AT_ENV: "stage:prepare", MARKER_ENV: str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace",
                             str(workspace_dir), "run"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(marker.exists,
                 what="the run to reach the prepare stage")
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
    [mid] = status_json(workspace_dir)
    assert (mid["status"], mid["stage"]) == ("processing", "prepare")

    done = learncast(workspace_dir, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    [ep] = status_json(workspace_dir)
    assert ep["status"] == "published" and ep["id"] == mid["id"]
    assert hashlib.sha256((workspace_dir / ep["files"]["original"]).read_bytes()).hexdigest() \
        == digest
    assert (workspace_dir / ep["files"]["source_audio"]).stat().st_size > 0
    assert not list(workspace_dir.rglob(f"*{TEMP_MARKER}*"))
    with sqlite3.connect(workspace_dir / "state" / "learncast.db") as conn:
        attempts = conn.execute("SELECT attempts FROM stage_runs WHERE stage='prepare'").fetchall()
    assert attempts == [(2,)]


def test_two_processes_on_one_inbox_take_each_file_once(workspace_dir: Path, tone) -> None:
    names = [f"clip-{i}.wav" for i in range(6)]
    for i, name in enumerate(names):
        tone(workspace_dir / "inbox" / name, seconds=1.5, freq=200 + 50 * i)
    env = {**os.environ, **TEST_ENV}
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace",
                               str(workspace_dir), "run"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    episodes = status_json(workspace_dir)
    assert sorted(e["source"] for e in episodes) == names
    assert all(e["status"] == "published" for e in episodes)
    with sqlite3.connect(workspace_dir / "state" / "learncast.db") as conn:
        attempts = [a for (a,) in conn.execute(
                "SELECT attempts FROM stage_runs WHERE stage='prepare'")]
    assert attempts == [1] * len(names), "each episode processed exactly once"
    done_lines = [line for out, _ in outputs for line in out.splitlines() if "✔" in line]
    assert len(done_lines) == len(names)


def test_watch_processes_new_files_and_stops_cleanly_on_sigterm(workspace_dir: Path,
                                                                tone, tmp_path: Path) -> None:
    env = {**os.environ, **TEST_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace",
                             str(workspace_dir), "watch"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        src = tone(tmp_path / "late.wav", seconds=2)
        os.replace(src, workspace_dir / "inbox" / "late.wav")
        wait_for(lambda: [e["status"] for e in status_json(workspace_dir)]
                 == ["published"], what="watch to process the dropped file")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "late.wav" in out


def test_a_held_episode_waits_for_review_and_resumes_when_queued_again(
        ctx: Context, db: StateDB, tone, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import HoldForReview

    approved = {"yes": False}
    after: list[str] = []

    def gate(job: Job, _ctx: Context) -> Job:
        if not approved["yes"]:
            raise HoldForReview("captions need a reviewer's approval")
        return job

    def later(job: Job, _ctx: Context) -> Job:
        after.append(job.id)
        return job

    monkeypatch.setattr(runner, "STAGES", (*runner.STAGES, runner.Stage("hold", gate),
                                           runner.Stage("after", later)))
    tone(ctx.workspace.inbox / "a.wav", seconds=2)
    report = runner.process_inbox(ctx)
    assert report.exit_code == 0 and after == []
    [job] = db.all()
    assert (job.status, job.stage) == (Status.AWAITING_REVIEW, "hold")
    assert runner.process_inbox(ctx).processed == [], "held episodes are not picked up"
    approved["yes"] = True
    db.save(job.replace(status=Status.QUEUED))
    runner.process_inbox(ctx)
    assert after == [job.id] and db.all()[0].status is Status.PUBLISHED


def test_workers_process_episodes_concurrently_each_exactly_once(
        ctx: Context, db: StateDB, tone, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    seen: list[tuple[str, str]] = []
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def slow(job: Job, wctx: Context) -> Job:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            seen.append((job.id, threading.current_thread().name))
        wctx.resources.setdefault("model", object())  # per-worker resources
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return job.with_measurements(model=id(wctx.resources["model"]))

    # first in line, so the workers reach it together (ASR later runs one at a time)
    monkeypatch.setattr(runner, "STAGES", (runner.Stage("slow", slow), *runner.STAGES))
    runner_settings = ctx.settings.runner.model_copy(update={"workers": 3})
    settings = ctx.settings.model_copy(update={"runner": runner_settings})
    monkeypatch.setattr(ctx, "workspace", ctx.workspace.__class__(ctx.workspace.root, settings))
    for i in range(6):
        tone(ctx.workspace.inbox / f"c{i}.wav", seconds=1.2, freq=300 + 40 * i)
    report = runner.process_inbox(ctx)
    assert report.exit_code == 0 and len(report.processed) == 6
    assert sorted(j for j, _ in seen) == sorted(j.id for j in db.all())  # once each
    assert peak[0] > 1, "episodes overlapped"
    models = {j.measurements["model"] for j in db.all()}
    assert 1 < len(models) <= 3, "one model instance per worker, not per episode"


def test_progress_reports_where_an_episode_stopped(ctx: Context, db: StateDB, tone,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The live display on a terminal stops a failed episode's line on this event; without it
    # the line kept showing the stage as running, its clock ticking.
    def broken(job: Job, _ctx: Context) -> Job:
        raise PipelineError("broken on purpose")

    monkeypatch.setattr(runner, "STAGES", (runner.STAGES[0], runner.Stage("broken", broken)))
    tone(ctx.workspace.inbox / "a.wav", seconds=2, freq=300)
    events: list[tuple[str, str]] = []
    runner.process_inbox(ctx, on_progress=lambda _job, stage, event: events.append(
        (stage, event)))
    assert events == [("prepare", "started"), ("prepare", "done"), ("broken", "started"),
                      ("broken", "failed")]


def test_transcription_progress_reaches_the_display_and_the_state_database(
        ctx: Context, db: StateDB, shared_audio: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = {"prepare", "trim", "normalise", "transcribe"}
    monkeypatch.setattr(runner, "STAGES", tuple(s for s in runner.STAGES if s.name in wanted))
    shutil.copyfile(shared_audio / "jfk.flac", ctx.workspace.inbox / "jfk.flac")
    seen: list[tuple[str, tuple[float, float] | None, object]] = []

    def on_progress(job: Job, stage: str, event: str,
                    amount: tuple[float, float] | None = None, /) -> None:
        if event == "progress":  # what `status` would show at this moment
            seen.append((stage, amount, db.running_progress().get(job.id)))

    runner.process_inbox(ctx, on_progress=on_progress)
    assert seen and {stage for stage, _, _ in seen} == {"transcribe"}
    assert all(stored == ("transcribe", *amount) for _, amount, stored in seen)  # type: ignore[misc]
    first, last = seen[0][1], seen[-1][1]
    assert first is not None and first[0] == 0.0
    assert last is not None and last[0] == last[1] == pytest.approx(11.0, abs=0.05)
    assert db.running_progress() == {}  # the stage is done: nothing running to show
