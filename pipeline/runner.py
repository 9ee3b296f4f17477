"""The one place that knows the stage order, and drives episodes through it.

Each stage's completion is recorded in the state database, so a restart (or a `kill -9`)
resumes at the stage that was interrupted; retryable faults are retried with exponential
backoff; anything else fails the episode with its reason, which `status` shows and
`failed/<name>.error.txt` explains. The CLI and the watcher only ever call this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline import ingest
from pipeline.errors import HoldForReview, PipelineError, RetryableError
from pipeline.fsutil import atomic_write_text, remove_stale_temp_files
from pipeline.models import Job, Status
from pipeline.stages import (
    caption,
    chapters,
    encode,
    normalise,
    prepare,
    publish,
    review,
    transcribe,
    trim,
    upload,
)
from pipeline.state import StateDB
from pipeline.workspace import Context

log = logging.getLogger(__name__)

StageFn = Callable[[Job, Context], Job]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn


#: The whole pipeline, in order. Captions come after encode so that cue times include the
#: intro bumper's offset; the review gate sits before anything is uploaded.
STAGES: tuple[Stage, ...] = (
    Stage("prepare", prepare.run),
    Stage("trim", trim.run),
    Stage("normalise", normalise.run),
    Stage("transcribe", transcribe.run),
    Stage("encode", encode.run),
    Stage("caption", caption.run),
    Stage("chapters", chapters.run),
    Stage("review", review.run),
    Stage("upload", upload.run),
    Stage("publish", publish.run),
)

#: Test hook for crash-recovery tests: `LEARNCAST_PAUSE_IN_STAGE=<stage>` makes the runner
#: stop inside that stage (after it is recorded as running) until the process is killed.
PAUSE_ENV = "LEARNCAST_PAUSE_IN_STAGE"

#: Least time between two progress figures written to the state database.
PROGRESS_INTERVAL_S = 1.0


class ProgressFn(Protocol):
    """on_progress(job, stage, event), event one of: started, done, held, failed, completed;
    and "progress" with a fourth argument, the stage's (done, total) (transcribe: seconds)."""

    def __call__(self, job: Job, stage: str, event: str,
                 amount: tuple[float, float] | None = None, /) -> None: ...


@dataclass(frozen=True)
class Outcome:
    job_id: str
    source: str
    title: str
    status: Status
    error: str | None = None


@dataclass
class RunReport:
    ingested: list[ingest.IngestResult] = field(default_factory=list)
    processed: list[Outcome] = field(default_factory=list)
    left_pending: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out = [f"{r.name}: {r.message}" for r in self.ingested if r.outcome == "rejected"]
        out += [f"{o.source}: {o.error}" for o in self.processed if o.status is Status.FAILED]
        return out

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def _final_status(stage_names: list[str]) -> Status:
    return Status.PUBLISHED if "publish" in stage_names else Status.AWAITING_REVIEW


def process_job(ctx: Context, db: StateDB, job: Job, *, stop: threading.Event | None = None,
                on_progress: ProgressFn | None = None) -> Job:
    """Run every stage the job has not completed yet; returns the job as it ended."""
    done = {name for name, row in db.stage_status(job.id).items() if row["status"] == "done"}
    job_dir = ctx.workspace.job_dir(job.id)
    job_dir.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        if stage.name in done:
            continue
        if stop is not None and stop.is_set():
            log.info("[runner] stopping before %s of %s; it resumes on the next run",
                     stage.name, job.id)
            db.release(job.id)
            return job
        job = _run_stage(ctx, db, job, stage, on_progress)
        if job.status == Status.FAILED and on_progress:
            on_progress(job, stage.name, "failed")
        if job.status in (Status.FAILED, Status.AWAITING_REVIEW):
            return job
    job = job.replace(status=_final_status([s.name for s in STAGES]), stage=None, error=None)
    db.save(job)
    db.release(job.id)
    db.event(job.id, "completed", f"all stages done; status {job.status}")
    _clear_failure_notes(ctx, job)
    if on_progress:
        on_progress(job, "", "completed")
    return job


def _run_stage(ctx: Context, db: StateDB, job: Job, stage: Stage,
               on_progress: ProgressFn | None) -> Job:
    settings = ctx.settings.runner
    remove_stale_temp_files([ctx.workspace.job_dir(job.id)])
    while True:
        attempt = db.stage_started(job.id, stage.name)
        job = job.replace(stage=stage.name, status=Status.PROCESSING)
        if on_progress:
            on_progress(job, stage.name, "started")
        log.info("[%s] %s (attempt %d)", stage.name, job.id, attempt)
        if os.environ.get(PAUSE_ENV) == stage.name:
            _pause_for_tests(ctx, job, stage.name)
        started = time.monotonic()
        cpu_started = _cpu_seconds()
        stage_ctx = dataclasses.replace(
            ctx, progress=_progress_reporter(db, job, stage.name, on_progress))
        try:
            job = stage.run(job, stage_ctx)
        except HoldForReview as hold:
            job = job.replace(status=Status.AWAITING_REVIEW, stage=stage.name, error=None)
            db.stage_held(job.id, stage.name)
            db.save(job)
            db.release(job.id)
            db.event(job.id, "held", str(hold) or "waiting for review")
            log.info("[%s] %s waits for review", stage.name, job.id)
            if on_progress:
                on_progress(job, stage.name, "held")
            return job
        except RetryableError as exc:
            if attempt >= settings.retry_attempts:
                return _fail(ctx, db, job, stage.name,
                             f"{exc} (gave up after {attempt} attempts)")
            delay = min(settings.retry_backoff_s * 2 ** (attempt - 1),
                        settings.retry_backoff_max_s)
            log.warning("[%s] %s: %s — retrying in %.1f s", stage.name, job.id, exc, delay)
            db.event(job.id, "retry", f"{stage.name} attempt {attempt}: {exc}")
            time.sleep(delay)
            continue
        except PipelineError as exc:
            return _fail(ctx, db, job, stage.name, str(exc))
        except Exception as exc:  # a bug: fail this episode, keep the batch going
            log.error("[%s] %s: unexpected error\n%s", stage.name, job.id,
                      traceback.format_exc())
            return _fail(ctx, db, job, stage.name,
                         f"internal error in stage '{stage.name}': {type(exc).__name__}: {exc}. "
                         "This is a Learncast bug; please report it with the log, then run "
                         f"`learncast retry {job.id}`")
        seconds = time.monotonic() - started
        timings = {**job.measurements.get("stage_seconds", {}), stage.name: round(seconds, 3)}
        cpu = {**job.measurements.get("stage_cpu_seconds", {}),
               stage.name: round(_cpu_seconds() - cpu_started, 3)}
        job = job.with_measurements(stage_seconds=timings, stage_cpu_seconds=cpu)
        db.stage_finished(job, stage.name, seconds)
        if on_progress:
            on_progress(job, stage.name, "done")
        return job


def _progress_reporter(db: StateDB, job: Job, stage: str, on_progress: ProgressFn | None
                       ) -> Callable[[float, float], None]:
    """What a stage's `ctx.progress(done, total)` does: tell the live display, and keep the
    latest figure in the state database for `learncast status` (at most once a second, and
    always the final one)."""
    last = -PROGRESS_INTERVAL_S

    def report(done: float, total: float) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last < PROGRESS_INTERVAL_S:
            return
        last = now
        db.stage_progress(job.id, stage, done, total)
        if on_progress:
            on_progress(job, stage, "progress", (done, total))

    return report


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg runs as a child).

    Process-wide, so a stage's figure is exact only when one episode is processed at a time
    (one worker, as in the benchmark); with several workers it includes their work too.
    """
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _pause_for_tests(ctx: Context, job: Job, stage: str) -> None:
    marker = ctx.workspace.job_dir(job.id) / f".paused-{stage}"
    marker.write_text(str(os.getpid()))
    while True:
        time.sleep(0.5)


def _fail(ctx: Context, db: StateDB, job: Job, stage: str, reason: str) -> Job:
    """Record the failure and leave the producer a note in `failed/` beside the original."""
    db.stage_failed(job.id, stage, reason)
    job = job.replace(status=Status.FAILED, stage=stage, error=reason)
    db.save(job)
    db.release(job.id)
    db.event(job.id, "failed", f"{stage}: {reason}")
    log.error("[%s] %s (%s) failed: %s", stage, job.id, job.source, reason)
    failed = ctx.workspace.failed
    failed.mkdir(parents=True, exist_ok=True)
    original = ctx.workspace.abs(job.original)
    link = failed / job.source
    if original.exists() and not link.exists():
        with contextlib.suppress(OSError):  # a hard link: same bytes, archive/ keeps them
            os.link(original, link)
    note = (f"Learncast could not finish '{job.source}' (episode {job.id}).\n\n"
            f"Stage: {stage}\nWhat was wrong:\n  {reason}\n\n"
            f"The original is kept unchanged in {job.original}. Fix the cause, then run\n"
            f"  learncast retry {job.id}\n")
    atomic_write_text(failed / f"{job.source}.error.txt", note)
    return job


def _clear_failure_notes(ctx: Context, job: Job) -> None:
    """After a successful retry the failure note no longer applies."""
    note = ctx.workspace.failed / f"{job.source}.error.txt"
    link = ctx.workspace.failed / job.source
    original = ctx.workspace.abs(job.original)
    if note.exists():
        note.unlink()
    if link.exists() and original.exists() and os.path.samefile(link, original):
        link.unlink()  # only the extra hard link; the archived original stays


def requeue(ctx: Context, db: StateDB, job: Job, *, from_start: bool = False) -> Job:
    """Queue a failed episode again, from its failed stage (or from the first stage)."""
    names = [s.name for s in STAGES]
    if from_start:
        db.reset_stages(job.id, names)
    elif job.stage in names:
        db.reset_stages(job.id, names[names.index(job.stage):])
    job = job.replace(status=Status.QUEUED, error=None)
    db.save(job)
    db.event(job.id, "requeued", f"from {'the start' if from_start else job.stage}")
    return job


def retry(ctx: Context, db: StateDB, job: Job) -> str:
    """`learncast retry`: a failed episode goes back to the queue (or its file to the inbox)."""
    if job.status is not Status.FAILED:
        raise PipelineError(f"episode {job.id} is {job.status}, not failed; nothing to retry")
    if job.stage == "ingest":
        # Rejected at the door: it never became an episode. Put the file (and the sidecar the
        # producer may have fixed in failed/) back into the inbox for a fresh ingest.
        ws = ctx.workspace
        for key in ("original", "sidecar"):
            if key in job.files and ws.abs(job.files[key]).exists():
                src = ws.abs(job.files[key])
                os.rename(src, ingest.unique_path(ws.inbox, src.name))
        note = ws.abs(job.files["original"]).with_name(Path(job.files["original"]).name
                                                       + ".error.txt")
        note.unlink(missing_ok=True)
        db.delete(job.id)
        return f"{job.source} moved back to the inbox; it is ingested on the next run"
    requeue(ctx, db, job)
    return f"episode {job.id} queued again from stage {job.stage}"


def process_inbox(ctx: Context, db: StateDB, *, wait: bool = True,
                  stop: threading.Event | None = None,
                  on_progress: ProgressFn | None = None) -> RunReport:
    """`learncast run`: take every finished file in the inbox, then work the queue dry."""
    report = RunReport()
    sweep_crash_debris(ctx)
    report.ingested += ingest_ready(ctx, db, wait=wait, stop=stop, report=report)
    report.processed += work_queue(ctx, db, stop=stop, on_progress=on_progress)
    _publish_scheduled(ctx, db)
    return report


def sweep_crash_debris(ctx: Context) -> None:
    """Remove temp files a killed process left beside final paths (captions, published
    objects, feeds), which the per-stage cleanup of the episode's work folder does not reach."""
    ws = ctx.workspace
    removed = remove_stale_temp_files([ws.work, ws.transcripts, ws.feeds, ws.public, ws.archive,
                                       ws.failed])
    if removed:
        log.info("[runner] removed %d temporary file(s) left by an interrupted run", removed)


def ingest_ready(ctx: Context, db: StateDB, *, wait: bool, stop: threading.Event | None = None,
                 report: RunReport | None = None,
                 scanner: ingest.InboxScanner | None = None) -> list[ingest.IngestResult]:
    results = [r for f in ingest.orphaned_claims(ctx)
               if (r := ingest.ingest_claim(ctx, db, f)) is not None]
    scanner = scanner or ingest.InboxScanner(ctx.workspace.inbox,
                                             ctx.settings.ingest.settle_seconds)
    deadline = time.monotonic() + ctx.settings.ingest.wait_seconds
    while True:
        ready, pending = scanner.poll()
        for path in ready:
            folder = ingest.claim(ctx, path)
            if folder is not None:
                result = ingest.ingest_claim(ctx, db, folder)
                if result is not None:
                    results.append(result)
        if not wait or not pending or (stop is not None and stop.is_set()):
            break
        if time.monotonic() > deadline:
            names = [p.name for p in pending]
            log.warning("[ingest] still being written, left for the next run: %s",
                        ", ".join(names))
            if report is not None:
                report.left_pending += names
            break
        time.sleep(min(0.5, max(ctx.settings.ingest.settle_seconds / 2, 0.05)))
    return results


def work_queue(ctx: Context, db: StateDB, *, stop: threading.Event | None = None,
               on_progress: ProgressFn | None = None) -> list[Outcome]:
    """Work until no episode is left, with `runner.workers` episodes in flight at once.

    Each worker gets its own Context (so its own ASR model in `resources`); the state
    database hands every episode to exactly one of them.
    """
    workers = ctx.settings.runner.worker_count
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def worker(wctx: Context) -> None:
        while not (stop is not None and stop.is_set()):
            job = db.claim_next()
            if job is None:
                return
            job = process_job(wctx, db, job, stop=stop, on_progress=on_progress)
            with lock:
                outcomes.append(Outcome(job.id, job.source, job.title, job.status, job.error))

    if workers == 1:
        worker(ctx)
        return outcomes
    threads = [threading.Thread(target=worker, args=(dataclasses.replace(ctx, resources={}),),
                                name=f"learncast-worker-{i}", daemon=True)
               for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def watch(ctx: Context, db: StateDB, stop: threading.Event,
          on_progress: ProgressFn | None = None,
          on_report: Callable[[RunReport], None] | None = None) -> None:
    """`learncast watch`: ingest and process until `stop` is set (SIGINT/SIGTERM)."""
    sweep_crash_debris(ctx)
    scanner = ingest.InboxScanner(ctx.workspace.inbox, ctx.settings.ingest.settle_seconds)
    poll = min(ctx.settings.runner.poll_seconds, max(ctx.settings.ingest.settle_seconds, 0.1))
    while not stop.is_set():
        report = RunReport()
        report.ingested = ingest_ready(ctx, db, wait=False, stop=stop, scanner=scanner)
        report.processed = work_queue(ctx, db, stop=stop, on_progress=on_progress)
        _publish_scheduled(ctx, db)
        if on_report and (report.ingested or report.processed):
            on_report(report)
        stop.wait(poll)


def _publish_scheduled(ctx: Context, db: StateDB) -> None:
    """Episodes with a future publish date join their feeds once the date has passed; also
    repairs a feed that two workers published at the same moment (each left out the other's
    episode, which was not `published` yet)."""
    from pipeline.feeds.publish import publish_due

    try:
        publish_due(ctx, db)
    except PipelineError as exc:  # keep watching; the next tick tries again
        log.error("[publish] scheduled episodes could not be published: %s", exc)
