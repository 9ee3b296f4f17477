"""`learncast worker`: run stage tasks, each claimed in the state store before it runs.

A task names one stage of one episode. Delivery is at least once (acks are late; a killed
worker's task is delivered again), so every task first asks the state store (`claim_stage`):
- **done** already: nothing to do (if the worker that finished it died before handing on,
  the next stage is sent now);
- **busy**: a live worker holds it (a second delivery): look again later;
- **claimed**: run it. The claim counts an attempt; a stage whose attempts are used up by
  workers that died in it (a recording that kills ffmpeg or exhausts memory every time) fails
  the episode with that reason instead of being handed out forever.
While a stage runs, a heartbeat renews the claim; when it ends, its outputs go to storage as
working copies, the stage is marked done (only if the claim is still ours), and the next
stage's task is sent. Transient faults are retried with the embedded runner's backoff, as new
deliveries that any worker may take; other errors fail the episode with their reason.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline import crashpoints, notify
from pipeline.config import Settings
from pipeline.errors import HoldForReview, PipelineError, RetryableError
from pipeline.ffmpeg import require_ffmpeg
from pipeline.fsutil import remove_stale_temp_files
from pipeline.models import Job, Status
from pipeline.queue import transfer
from pipeline.runner import (
    STAGES,
    Stage,
    _cpu_seconds,
    _final_status,
    _progress_reporter,
    call_stage,
    stage_names,
)
from pipeline.state import LeaseLost, open_state
from pipeline.workspace import Context, open_workspace, resolve_root

log = logging.getLogger(__name__)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
#: A task that could not reach the state store or broker is delivered again this much later.
STORE_RETRY_S = 30.0
Dispatch = Callable[[str, str], None]  # (stage, job_id): send that stage's task


@dataclass(frozen=True)
class Later:
    """Deliver this task again after `seconds` (a transient fault, or another worker holds
    the stage)."""

    seconds: float
    reason: str


# --- one context per worker process ---------------------------------------------------------

_context: Context | None = None
_context_pid = 0
_last_prune = 0.0


def process_context() -> Context:
    """This process's workspace, state store, storage and models: built on first use in each
    process (a prefork child must not share its parent's database connection)."""
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        ws = open_workspace(resolve_root(None))
        ws.ensure()
        _context = Context(workspace=ws, ffmpeg=require_ffmpeg(ws.settings.ffmpeg.path,
                                                               cache_dir=ws.state_db.parent),
                           state=open_state(ws))
        _context_pid = os.getpid()
    return _context


def handle(task: Any, stage: str, job_id: str) -> str:
    """The body of every stage task (see `pipeline.queue.app`)."""
    from pipeline.queue.app import send

    ctx = process_context()
    try:
        outcome = execute(ctx, stage, job_id, lambda s, j: send(task.app, s, j))
    except Exception as exc:  # the state store or broker out of reach for too long
        log.error("[%s] %s: %s; the task is delivered again in %.0f s", stage, job_id, exc,
                  STORE_RETRY_S)
        raise task.retry(countdown=STORE_RETRY_S, exc=exc) from exc
    finally:
        _prune(ctx)
    if isinstance(outcome, Later):
        log.info("[%s] %s: %s; again in %.1f s", stage, job_id, outcome.reason, outcome.seconds)
        raise task.retry(countdown=outcome.seconds)
    return outcome


def _prune(ctx: Context) -> None:
    global _last_prune
    if time.monotonic() - _last_prune < 60:
        return
    _last_prune = time.monotonic()
    try:
        transfer.prune_workspace(ctx)
    except Exception as exc:  # tidying must never fail a task
        log.warning("[queue] could not prune the workspace: %s", exc)


# --- one stage of one episode ---------------------------------------------------------------

def execute(ctx: Context, stage_name: str, job_id: str, dispatch: Dispatch) -> str | Later:
    """Run `stage_name` of an episode if it is this worker's to run; returns what happened."""
    db, settings = ctx.db, ctx.settings
    stage = BY_NAME.get(stage_name)
    job = db.get(job_id)
    if stage is None or job is None:
        log.warning("[queue] dropping a task for %s of episode %s: %s", stage_name, job_id,
                    "no such stage" if stage is None else "no such episode")
        return "dropped"
    if job.status is not Status.PROCESSING:
        return f"skipped: episode is {job.status}"
    names = stage_names()
    index = names.index(stage_name)
    status = db.stage_status(job_id)
    early = [n for n in names[:index] if status.get(n, {}).get("status") != "done"]
    if early:  # a stale task: the episode was sent back to an earlier stage
        return f"skipped: {early[0]} is not done"
    claim = db.claim_stage(job_id, stage_name, settings.queue.lease_seconds)
    if claim.state == "done":
        _hand_on(ctx, job, index, dispatch)
        return "already done"
    if claim.state == "busy":
        return Later(max(settings.queue.lease_seconds / 2, 1.0),
                     "another worker is running this stage")
    attempt = claim.attempt
    if attempt > settings.runner.retry_attempts:
        last = status.get(stage_name, {}).get("error")
        _fail(ctx, job, stage_name,
              f"stage '{stage_name}' was started {attempt - 1} times and never finished: the "
              "worker running it stopped each time (killed, out of memory, or crashed)"
              + (f"; last error: {last}" if last else "") + ". Check the workers' logs and "
              f"memory, then run `learncast retry {job_id}`")
        return "failed"
    job = db.get(job_id) or job
    return _run(ctx, job, stage, attempt, dispatch)


def _run(ctx: Context, job: Job, stage: Stage, attempt: int, dispatch: Dispatch) -> str | Later:
    db, settings = ctx.db, ctx.settings
    log.info("[%s] %s (attempt %d) on %s", stage.name, job.id, attempt, db.owner)
    remove_stale_temp_files([ctx.workspace.job_dir(job.id)])
    ctx.workspace.job_dir(job.id).mkdir(parents=True, exist_ok=True)
    with _lease(ctx, job.id, stage.name):
        started, cpu_started = time.monotonic(), _cpu_seconds()
        try:
            transfer.fetch_inputs(ctx, job, stage)
            crashpoints.reached(f"stage:{stage.name}")
            progress = _progress_reporter(db, job, stage.name, None)  # `status` sees it
            out = call_stage(stage, job, dataclasses.replace(ctx, progress=progress))
            copies, replaced = transfer.store_outputs(ctx, job, out, stage)
        except HoldForReview as hold:
            job = job.replace(status=Status.AWAITING_REVIEW, stage=stage.name, error=None)
            db.stage_held(job.id, stage.name)
            db.save(job)
            db.event(job.id, "held", str(hold) or "waiting for review")
            notify.event(ctx, "review", job=job)
            log.info("[%s] %s waits for review", stage.name, job.id)
            return "held"
        except RetryableError as exc:
            if attempt >= settings.runner.retry_attempts:
                _fail(ctx, job, stage.name, f"{exc} (gave up after {attempt} attempts)")
                return "failed"
            runner = settings.runner
            delay = min(runner.retry_backoff_s * 2 ** (attempt - 1), runner.retry_backoff_max_s)
            db.stage_retry_later(job.id, stage.name, str(exc))
            db.event(job.id, "retry", f"{stage.name} attempt {attempt}: {exc}")
            return Later(delay, f"{exc} — retrying")
        except PipelineError as exc:
            _fail(ctx, job, stage.name, str(exc))
            return "failed"
        except Exception as exc:  # a bug: fail this episode, keep the worker going
            log.error("[%s] %s: unexpected error\n%s", stage.name, job.id,
                      traceback.format_exc())
            _fail(ctx, job, stage.name,
                  f"internal error in stage '{stage.name}': {type(exc).__name__}: {exc}. "
                  "This is a Learncast bug; please report it with the log, then run "
                  f"`learncast retry {job.id}`")
            return "failed"
        seconds = time.monotonic() - started
        timings = {**out.measurements.get("stage_seconds", {}), stage.name: round(seconds, 3)}
        cpu = {**out.measurements.get("stage_cpu_seconds", {}),
               stage.name: round(_cpu_seconds() - cpu_started, 3)}
        out = out.with_measurements(stage_seconds=timings, stage_cpu_seconds=cpu)
        try:
            db.stage_finished(out, stage.name, seconds, copies=copies, leased=True)
        except LeaseLost as exc:
            log.warning("[%s] %s: %s", stage.name, job.id, exc)
            transfer.delete_keys(ctx, job.id, [c.key for c in copies])
            return "lost"
    transfer.delete_keys(ctx, job.id, replaced)
    _hand_on(ctx, out, STAGES.index(stage), dispatch)
    return "done"


def _hand_on(ctx: Context, job: Job, index: int, dispatch: Dispatch) -> None:
    """After stage `index` is done: send the next stage, or finish the episode."""
    if index + 1 < len(STAGES):
        nxt = STAGES[index + 1].name
        row = ctx.db.stage_status(job.id).get(nxt)
        if row is None or row["status"] == "queued":
            dispatch(nxt, job.id)
        return
    current = ctx.db.get(job.id)
    if current is None or current.status is not Status.PROCESSING:
        return
    done = current.replace(status=_final_status(stage_names()), stage=None, error=None)
    # The copies go before the status changes, so whoever sees the episode finished (the
    # waiting `run`, a reviewer, a test) finds nothing left over; a crash in between is
    # harmless: the redelivered task finds the stage done and comes back here.
    transfer.remove_copies(ctx, done)
    ctx.db.save(done)
    ctx.db.event(job.id, "completed", f"all stages done; status {done.status}")
    notify.event(ctx, "published", job=done)
    log.info("[queue] %s (%s): %s", job.id, job.source, done.status)


def _fail(ctx: Context, job: Job, stage: str, reason: str) -> None:
    """Record the failure; the machine that ingested the recording writes the producer's
    note in its `failed/` (it has the original)."""
    db = ctx.db
    db.stage_failed(job.id, stage, reason)
    db.save(job.replace(status=Status.FAILED, stage=stage, error=reason))
    db.event(job.id, "failed", f"{stage}: {reason}")
    notify.event(ctx, "failed", job=job.replace(status=Status.FAILED, stage=stage,
                                                error=reason), stage=stage, reason=reason)
    log.error("[%s] %s (%s) failed: %s", stage, job.id, job.source, reason)


@contextmanager
def _lease(ctx: Context, job_id: str, stage: str) -> Iterator[None]:
    """Renew the claim every quarter lease while the stage runs."""
    stop = threading.Event()
    every = max(ctx.settings.queue.lease_seconds / 4, 0.5)

    def beat() -> None:
        while not stop.wait(every):
            try:
                if not ctx.db.stage_heartbeat(job_id, stage):
                    log.warning("[%s] %s: the claim on this stage was taken over", stage,
                                job_id)
                    return
            except Exception as exc:  # the store is out of reach: keep trying
                log.warning("[%s] %s: heartbeat failed: %s", stage, job_id, exc)

    thread = threading.Thread(target=beat, name=f"lease-{stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# --- the worker process -------------------------------------------------------------------

def run_worker(settings: Settings, queues: Sequence[str], concurrency: int,
               loglevel: str = "INFO") -> int:
    """Start a Celery worker in the foreground. One task per process at a time: `solo` for
    one, `prefork` children for several (each with its own models and connections)."""
    from pipeline.queue.app import make_app

    app = make_app(settings)
    pool = "solo" if concurrency == 1 else "prefork"
    argv = ["worker", f"--queues={','.join(queues)}", f"--concurrency={concurrency}",
            f"--pool={pool}", f"--loglevel={loglevel}", "--without-gossip",
            "--without-mingle", f"--hostname=learncast-{'-'.join(queues)}-{os.getpid()}@%h"]
    app.worker_main(argv)
    return 0
