"""The one place that knows the stage order, and drives episodes through it.

Each stage's completion is recorded in the state database, so a restart (or a `kill -9`)
resumes at the stage that was interrupted; retryable faults are retried with exponential
backoff; anything else fails the episode with its reason, which `status` shows and
`failed/<name>.error.txt` explains. The CLI and the watcher only ever call this module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

from pipeline import crashpoints, failures, ingest, notify
from pipeline.artifacts import Artifact
from pipeline.errors import HoldForReview, PipelineError, RetryableError, ToolError
from pipeline.fsutil import remove_stale_temp_files
from pipeline.models import Job, Status
from pipeline.stages import (
    audiogram,
    caption,
    chapters,
    diarize,
    encode,
    normalise,
    package,
    prepare,
    publish,
    review,
    soundbites,
    transcribe,
    trim,
    upload,
)
from pipeline.state import StateStore, check_storable
from pipeline.workspace import Context

log = logging.getLogger(__name__)

StageFn = Callable[[Job, Context], Job]


@dataclass(frozen=True)
class Stage:
    """A stage and its contract: the artifacts it `needs` (must exist), `uses` (read when
    present) and `makes`. The runner resolves the first two into `ctx.inputs`."""

    name: str
    run: StageFn
    needs: tuple[Artifact, ...] = ()
    uses: tuple[Artifact, ...] = ()
    makes: tuple[Artifact, ...] = ()

    @classmethod
    def of(cls, module: ModuleType) -> Stage:
        return cls(module.__name__.rsplit(".", 1)[-1], module.run,
                   tuple(getattr(module, "NEEDS", ())), tuple(getattr(module, "USES", ())),
                   tuple(getattr(module, "MAKES", ())))


#: The whole pipeline, in order. Chapters and captions come after encode, which fixes where
#: the content starts after an intro; captions break at chapter starts; soundbites are cut
#: before review so the reviewer hears them; package then puts chapters and the caption track
#: into the deliverables; the review gate sits before anything is uploaded; the audiogram
#: (captions burned in) is drawn after it, once the captions are final.
STAGES: tuple[Stage, ...] = tuple(Stage.of(m) for m in (
    prepare, trim, normalise, transcribe, diarize, encode, chapters, caption, soundbites,
    package, review, audiogram, upload, publish))


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


#: What ingest gives every episode before the first stage runs.
INGESTED: tuple[Artifact, ...] = (Artifact.ORIGINAL,)


class StageOrderError(Exception):
    """A stage needs an artifact that no earlier stage makes: a programming error."""


def check_order(stages: Iterable[Stage], available: Iterable[Artifact] = INGESTED) -> None:
    """Refuse an order in which a stage reads what no earlier stage has made."""
    made = {a: "ingest" for a in available}
    makers = {a: s.name for s in stages for a in s.makes}
    for stage in stages:
        for artifact in (*stage.needs, *stage.uses):
            if artifact not in made:
                later = makers.get(artifact)
                where = f"stage '{later}' makes it later" if later else "no stage makes it"
                raise StageOrderError(f"stage '{stage.name}' reads {artifact.value}, but {where};"
                                      " fix the order in pipeline/runner.py STAGES")
        made.update({a: stage.name for a in stage.makes})


check_order(STAGES)
_MAKER: dict[Artifact, str] = {**{a: "ingest" for a in INGESTED},
                              **{a: s.name for s in reversed(STAGES) for a in s.makes}}


def resolve_inputs(ctx: Context, job: Job, stage: Stage) -> dict[Artifact, Path]:
    """Paths of what `stage` reads. A need that was never made, or any input the episode has
    on record but is gone from disk, is an error naming the stage that makes it."""
    inputs: dict[Artifact, Path] = {}
    for artifact in (*stage.needs, *stage.uses):
        stored = job.files.get(artifact)
        if stored is None and artifact not in stage.needs:
            continue
        path = ctx.workspace.abs(stored) if stored else None
        if path is not None and path.is_file():
            inputs[artifact] = path
            continue
        if artifact is Artifact.ORIGINAL:
            raise PipelineError(f"the archived original {stored} of episode {job.id} is "
                                "missing; restore it from your backup (Learncast never deletes "
                                f"it), then run `learncast retry {job.id}`")
        maker = _MAKER.get(artifact, "ingest")
        state = f"{stored} is missing" if stored else "it was never made"
        raise PipelineError(f"stage '{stage.name}' needs the {artifact.value} of episode "
                            f"{job.id}, but {state}. Run `learncast retry {job.id} --from "
                            f"{maker}` to make it again")
    return inputs


def call_stage(stage: Stage | ModuleType, job: Job, ctx: Context) -> Job:
    """Run one stage with its inputs resolved; check it made only what it declared."""
    stage = stage if isinstance(stage, Stage) else Stage.of(stage)
    out = stage.run(job, dataclasses.replace(ctx, inputs=resolve_inputs(ctx, job, stage)))
    check_storable(out)  # a result that would not read back fails this episode, not the run
    undeclared = {a for a, p in out.files.items() if job.files.get(a) != p} - set(stage.makes)
    if undeclared:
        raise StageOrderError(f"stage '{stage.name}' made {', '.join(sorted(undeclared))} "
                              "without declaring it in MAKES")
    return out


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


def _final_status(stage_names: Iterable[str]) -> Status:
    return Status.PUBLISHED if "publish" in stage_names else Status.AWAITING_REVIEW


def process_job(ctx: Context, job: Job, *, stop: threading.Event | None = None,
                on_progress: ProgressFn | None = None) -> Job:
    """Run every stage the job has not completed yet; returns the job as it ended."""
    db = ctx.db
    done = {name for name, row in db.stage_status(job.id).items() if row["status"] == "done"}
    ctx.workspace.job_dir(job.id).mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        if stage.name in done:
            continue
        if stop is not None and stop.is_set():
            log.info("[runner] stopping before %s of %s; it resumes on the next run",
                     stage.name, job.id)
            db.release(job.id)
            return job
        job = _run_stage(ctx, job, stage, on_progress)
        if job.status == Status.FAILED and on_progress:
            on_progress(job, stage.name, "failed")
        if job.status in (Status.FAILED, Status.AWAITING_REVIEW):
            return job
    job = job.replace(status=_final_status(stage_names()), stage=None, error=None)
    db.save(job)
    db.release(job.id)
    db.event(job.id, "completed", f"all stages done; status {job.status}")
    failures.clear_episode(ctx.workspace, job)
    notify.event(ctx, "published", job=job)
    if on_progress:
        on_progress(job, "", "completed")
    return job


def _run_stage(ctx: Context, job: Job, stage: Stage, on_progress: ProgressFn | None) -> Job:
    settings = ctx.settings.runner
    db = ctx.db
    remove_stale_temp_files([ctx.workspace.job_dir(job.id)])
    while True:
        attempt = db.stage_started(job.id, stage.name)
        job = job.replace(stage=stage.name, status=Status.PROCESSING)
        if on_progress:
            on_progress(job, stage.name, "started")
        log.info("[%s] %s (attempt %d)", stage.name, job.id, attempt)
        crashpoints.reached(f"stage:{stage.name}")
        started = time.monotonic()
        cpu_started = _cpu_seconds()
        stage_ctx = dataclasses.replace(
            ctx, progress=_progress_reporter(db, job, stage.name, on_progress))
        try:
            ingest.check_original(ctx, job)
            job = call_stage(stage, job, stage_ctx)
        except HoldForReview as hold:
            job = job.replace(status=Status.AWAITING_REVIEW, stage=stage.name, error=None)
            db.stage_held(job.id, stage.name)
            db.save(job)
            db.release(job.id)
            db.event(job.id, "held", str(hold) or "waiting for review")
            notify.event(ctx, "review", job=job)
            log.info("[%s] %s waits for review", stage.name, job.id)
            if on_progress:
                on_progress(job, stage.name, "held")
            return job
        except ToolError as exc:  # a broken ffmpeg is not the episode's fault: keep it queued
            _shelve(ctx, job, stage.name, exc)
            raise
        except RetryableError as exc:
            if attempt >= settings.retry_attempts:
                return _fail(ctx, job, stage.name, f"{exc} (gave up after {attempt} attempts)")
            delay = min(settings.retry_backoff_s * 2 ** (attempt - 1),
                        settings.retry_backoff_max_s)
            log.warning("[%s] %s: %s — retrying in %.1f s", stage.name, job.id, exc, delay)
            db.event(job.id, "retry", f"{stage.name} attempt {attempt}: {exc}")
            time.sleep(delay)
            continue
        except PipelineError as exc:
            return _fail(ctx, job, stage.name, str(exc))
        except Exception as exc:  # a bug: fail this episode, keep the batch going
            log.error("[%s] %s: unexpected error\n%s", stage.name, job.id,
                      traceback.format_exc())
            return _fail(ctx, job, stage.name,
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


def _progress_reporter(db: StateStore, job: Job, stage: str, on_progress: ProgressFn | None
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


def _shelve(ctx: Context, job: Job, stage: str, exc: ToolError) -> None:
    """Put the episode back in the queue as if `stage` had not started; the run then stops
    with the tool's error, and the next run (with a working tool) takes it from there.

    Not retried here with backoff: a binary that cannot start or crashes will do so again,
    and giving up after N attempts would fail a good recording for good."""
    db = ctx.db
    db.reset_stages(job.id, [stage])
    db.save(job.replace(status=Status.QUEUED, stage=stage, error=None))
    db.release(job.id)
    db.event(job.id, "tool-error", f"{stage}: {exc}")
    log.error("[%s] %s stays queued: %s", stage, job.id, exc)


def _fail(ctx: Context, job: Job, stage: str, reason: str) -> Job:
    """Record the failure and leave the producer a note in `failed/`."""
    db = ctx.db
    db.stage_failed(job.id, stage, reason)
    job = job.replace(status=Status.FAILED, stage=stage, error=reason)
    db.save(job)
    db.release(job.id)
    db.event(job.id, "failed", f"{stage}: {reason}")
    log.error("[%s] %s (%s) failed: %s", stage, job.id, job.source, reason)
    failures.episode_failed(ctx.workspace, job, stage, reason)
    notify.event(ctx, "failed", job=job, stage=stage, reason=reason)
    return job


def requeue(ctx: Context, job: Job, *, from_stage: str | None = None) -> Job:
    """Queue an episode again from `from_stage` (default: the stage it stopped at)."""
    names = stage_names()
    start = from_stage or job.stage
    if start == "ingest":
        start = names[0]
    if start in names:
        ctx.db.reset_stages(job.id, names[names.index(start):])
    job = job.replace(status=Status.QUEUED, error=None)
    ctx.db.save(job)
    ctx.db.event(job.id, "requeued", f"from {start}")
    return job


def retry(ctx: Context, job: Job, from_stage: str | None = None) -> str:
    """`learncast retry`: a failed episode goes back to the queue."""
    if from_stage is not None and from_stage not in stage_names():
        raise PipelineError(f"there is no stage {from_stage!r}; stages: "
                            f"{', '.join(stage_names())}")
    if job.status is not Status.FAILED and from_stage is None:
        raise PipelineError(f"episode {job.id} is {job.status}, not failed; nothing to retry "
                            "(to redo stages anyway, add --from STAGE)")
    if job.status is Status.PROCESSING:
        raise PipelineError(f"episode {job.id} is being processed; wait until it stops")
    requeue(ctx, job, from_stage=from_stage)
    return f"episode {job.id} queued again from stage {from_stage or job.stage}"


def process_inbox(ctx: Context, *, wait: bool = True, stop: threading.Event | None = None,
                  on_progress: ProgressFn | None = None) -> RunReport:
    """`learncast run`: take every finished file in the inbox, then work the queue dry.
    With `[queue] url` set, the workers do the stages (`pipeline.queue.coordinator`).
    Notifications go out meanwhile (`pipeline.notify`)."""
    with notify.courier(ctx):
        return _process_inbox(ctx, wait=wait, stop=stop, on_progress=on_progress)


def _process_inbox(ctx: Context, *, wait: bool, stop: threading.Event | None,
                   on_progress: ProgressFn | None) -> RunReport:
    if ctx.settings.queue.url:
        from pipeline.queue import coordinator

        return coordinator.process_inbox(ctx, wait=wait, stop=stop, on_progress=on_progress)
    report = RunReport()
    sweep_crash_debris(ctx)
    report.ingested += ingest_ready(ctx, wait=wait, stop=stop, report=report)
    report.processed += work_queue(ctx, stop=stop, on_progress=on_progress)
    _publish_scheduled(ctx)
    return report


def sweep_crash_debris(ctx: Context) -> None:
    """Remove temp files a killed process left beside final paths (captions, published
    objects, feeds), which the per-stage cleanup of the episode's work folder does not reach."""
    ws = ctx.workspace
    removed = remove_stale_temp_files([ws.work, ws.transcripts, ws.feeds, ws.public, ws.archive,
                                       ws.failed])
    if removed:
        log.info("[runner] removed %d temporary file(s) left by an interrupted run", removed)


def _ingest_one(ctx: Context, folder: Path) -> ingest.IngestResult | None:
    result = ingest.ingest_claim(ctx, folder)
    if result is not None and result.requeue is not None:
        requeue(ctx, result.requeue, from_stage=stage_names()[0] if result.from_start else None)
    return result


def ingest_ready(ctx: Context, *, wait: bool, stop: threading.Event | None = None,
                 report: RunReport | None = None,
                 scanner: ingest.InboxScanner | None = None) -> list[ingest.IngestResult]:
    results = [r for f in ingest.orphaned_claims(ctx) if (r := _ingest_one(ctx, f)) is not None]
    scanner = scanner or ingest.InboxScanner(ctx.workspace.inbox,
                                             ctx.settings.ingest.settle_seconds)
    deadline = time.monotonic() + ctx.settings.ingest.wait_seconds
    while True:
        ready, pending = scanner.poll()
        for path in ready:
            folder = ingest.claim(ctx, path)
            if folder is not None and (result := _ingest_one(ctx, folder)) is not None:
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


def work_queue(ctx: Context, *, stop: threading.Event | None = None,
               on_progress: ProgressFn | None = None) -> list[Outcome]:
    """Work until no episode is left, with `runner.workers` episodes in flight at once.

    Each worker gets its own Context (so its own ASR model in `resources`); the state
    database hands every episode to exactly one of them.
    """
    workers = ctx.settings.runner.worker_count
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    broken: list[ToolError] = []  # set by the first worker whose ffmpeg failed; all stop

    def worker(wctx: Context) -> None:
        while not (stop is not None and stop.is_set()) and not broken:
            job = wctx.db.claim_next()
            if job is None:
                return
            try:
                job = process_job(wctx, job, stop=stop, on_progress=on_progress)
            except ToolError as exc:
                broken.append(exc)
                return
            with lock:
                outcomes.append(Outcome(job.id, job.source, job.title, job.status, job.error))

    if workers == 1:
        worker(ctx)
    else:
        # Each worker its own resources (ASR model), sharing the storage backend.
        shared = {k: v for k, v in ctx.resources.items() if k == "storage"}
        threads = [threading.Thread(target=worker, name=f"learncast-worker-{i}", daemon=True,
                                    args=(dataclasses.replace(ctx, resources=dict(shared)),))
                   for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if broken:
        raise broken[0]
    return outcomes


def watch(ctx: Context, stop: threading.Event, on_progress: ProgressFn | None = None,
          on_report: Callable[[RunReport], None] | None = None) -> None:
    """`learncast watch`: ingest and process until `stop` is set (SIGINT/SIGTERM)."""
    with notify.courier(ctx):
        _watch(ctx, stop, on_progress, on_report)


def _watch(ctx: Context, stop: threading.Event, on_progress: ProgressFn | None,
           on_report: Callable[[RunReport], None] | None) -> None:
    if ctx.settings.queue.url:
        from pipeline.queue import coordinator

        return coordinator.watch(ctx, stop, on_progress=on_progress, on_report=on_report)
    sweep_crash_debris(ctx)
    scanner = ingest.InboxScanner(ctx.workspace.inbox, ctx.settings.ingest.settle_seconds)
    poll = min(ctx.settings.runner.poll_seconds, max(ctx.settings.ingest.settle_seconds, 0.1))
    while not stop.is_set():
        report = RunReport()
        report.ingested = ingest_ready(ctx, wait=False, stop=stop, scanner=scanner)
        report.processed = work_queue(ctx, stop=stop, on_progress=on_progress)
        _publish_scheduled(ctx)
        if on_report and (report.ingested or report.processed):
            on_report(report)
        stop.wait(poll)


def _publish_scheduled(ctx: Context) -> None:
    """Episodes with a future publish date join their feeds once the date has passed; also
    repairs a feed that two workers published at the same moment (each left out the other's
    episode, which was not `published` yet)."""
    from pipeline.feeds.publish import publish_due

    try:
        publish_due(ctx)
    except PipelineError as exc:  # keep watching; the next tick tries again
        log.error("[publish] scheduled episodes could not be published: %s", exc)
