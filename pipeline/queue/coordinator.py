"""`learncast run` and `watch` with a queue: ingest here, enqueue, follow the episodes.

The machine that sees the inbox ingests as in embedded mode (claim, hash, probe, archive),
stores each new episode's original as a working copy, and sends its first stage's task.
`run` then waits until every episode it sent is published, held for review or failed, and
exits with the usual codes; `watch` keeps ingesting and does not wait. Both write the
producer's failure note in this machine's `failed/` (the workers have no inbox to write to),
and both watch over the episodes in flight: a stage claimed by a worker that died (same
machine: its process is gone; another machine: no heartbeat for `[queue] lease_seconds`), or
an episode nobody has worked on for longer than any retry countdown whose task is not waiting
in the broker (lost: Redis drops what a worker held across a restart or a warm shutdown), gets
its task sent again. A task sent twice is harmless: the state store lets only one worker run
a stage.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from pipeline import failures
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.models import Job, Status
from pipeline.queue import transfer
from pipeline.queue.app import make_app, send, waiting
from pipeline.queue.worker import STORE_RETRY_S
from pipeline.runner import (
    Outcome,
    ProgressFn,
    RunReport,
    _publish_scheduled,
    ingest_ready,
    stage_names,
    sweep_crash_debris,
)
from pipeline.state import owner_alive
from pipeline.workspace import Context

log = logging.getLogger(__name__)

FINAL = (Status.PUBLISHED, Status.AWAITING_REVIEW, Status.FAILED, Status.UNPUBLISHED)
#: How long `run` keeps trying to send what it ingested while the broker is out of reach.
ENQUEUE_PATIENCE_S = 300.0


@dataclass
class Coordinator:
    """Enqueues episodes and follows them until they stop."""

    ctx: Context
    app: Celery
    on_progress: ProgressFn | None = None
    #: episode id → last stage reported to on_progress
    following: dict[str, str | None] = field(default_factory=dict)
    #: (episode, stage, attempts) → when its task was last sent again
    resent: dict[tuple[str, str, int], float] = field(default_factory=dict)
    #: (episode, stage) → since when this coordinator has seen that stage open and not running
    quiet_since: dict[tuple[str, str], float] = field(default_factory=dict)
    last_rescue: float = 0.0

    def enqueue(self, job_id: str | None = None) -> list[Job]:
        """Queued episodes (new, retried, approved; or only `job_id`) become processing;
        first task sent."""
        db = self.ctx.db
        sent = []
        for job in db.take_queued(job_id=job_id):
            try:
                transfer.share_original(self.ctx, job)
                self.dispatch(job)
            except Exception as exc:  # storage or broker out of reach: next time
                log.warning("[queue] %s: could not enqueue (%s); trying again shortly",
                            job.id, exc)
                db.save(job.replace(status=Status.QUEUED))
                continue
            db.event(job.id, "enqueued", f"sent to the {self.first_open(job) or '?'} task")
            self.following[job.id] = None
            sent.append(job)
        return sent

    def first_open(self, job: Job) -> str | None:
        return _first_open(self.ctx.db.stage_status(job.id))

    def dispatch(self, job: Job) -> None:
        stage = self.first_open(job)
        if stage is not None:
            send(self.app, stage, job.id)

    def look(self) -> list[Outcome]:
        """Episodes that stopped since the last look (notes written), and stalled stages
        sent again."""
        db, ws = self.ctx.db, self.ctx.workspace
        outcomes = []
        for job_id, reported in list(self.following.items()):
            job = db.get(job_id)
            if job is None:
                del self.following[job_id]
                continue
            if job.status in FINAL:
                del self.following[job_id]
                if job.status is Status.FAILED:
                    failures.episode_failed(ws, job, job.stage or "?", job.error or "")
                else:
                    failures.clear_episode(ws, job)
                if self.on_progress:
                    event = {Status.FAILED: "failed", Status.AWAITING_REVIEW: "held"}.get(
                        job.status, "completed")
                    self.on_progress(job, job.stage or "", event)
                outcomes.append(Outcome(job.id, job.source, job.title, job.status, job.error))
                continue
            if job.stage != reported and job.stage and self.on_progress:
                self.on_progress(job, job.stage, "started")
            self.following[job_id] = job.stage
        # every episode in flight is checked, also those sent by earlier runs; not on every
        # look (it reads every episode), but well within a lease
        every = max(self.ctx.settings.queue.lease_seconds / 4, 1.0)
        if time.monotonic() - self.last_rescue >= every:
            self.last_rescue = time.monotonic()
            self.rescue(j for j in db.all() if j.status is Status.PROCESSING)
        return outcomes

    def rescue(self, jobs: Iterable[Job]) -> None:
        """Send again the task of a stage whose worker died, or of a stage nobody has worked
        on for longer than any countdown a task may wait (`stall_seconds`) whose task is not
        waiting in the broker either (lost)."""
        settings = self.ctx.settings
        q = settings.queue
        stall = stall_seconds(settings)
        now = time.time()
        in_broker = functools.cache(self._waiting)  # looked into once, and only if needed
        quiet_since, self.quiet_since = self.quiet_since, {}
        for job in jobs:
            if job.status is not Status.PROCESSING:
                continue
            status = self.ctx.db.stage_status(job.id)
            stage = _first_open(status)
            if stage is None:
                continue
            row = status.get(stage, {})
            owner, beat = row.get("owner"), row.get("heartbeat") or 0.0
            dead = row.get("status") == "running" and (
                not owner or (now - beat > q.lease_seconds) or not owner_alive(owner))
            lost = False
            if row.get("status") != "running":
                since = self.quiet_since[(job.id, stage)] = quiet_since.get((job.id, stage), now)
                quiet = now - max(_heard(status), since)
                if quiet > stall:
                    queued = in_broker()
                    lost = (stage, job.id) not in queued if queued is not None else \
                        quiet > q.visibility_timeout_s
            if not (dead or lost):
                continue
            mark = (job.id, stage, int(row.get("attempts") or 0))
            if now - self.resent.get(mark, 0.0) < q.lease_seconds:
                continue
            self.resent[mark] = now
            why = "its worker stopped" if dead else "its task was lost by the broker"
            log.warning("[queue] %s: sending %s again (%s)", job.id, stage, why)
            self.ctx.db.event(job.id, "resent", f"{stage}: {why}")
            send(self.app, stage, job.id)

    def _waiting(self) -> set[tuple[str, str]] | None:
        try:
            return waiting(self.app)
        except Exception as exc:  # the broker out of reach: look next time
            log.warning("[queue] could not look into the broker's queues: %s", exc)
            return None


def stall_seconds(settings: Settings) -> float:
    """How long a stage may sit with nobody working on it before its task counts as lost
    (unless the task is waiting in the broker): longer than any countdown a task is given
    (a retry's backoff, a store outage's pause) plus a lease."""
    longest = max(settings.runner.retry_backoff_max_s, STORE_RETRY_S)
    return settings.queue.lease_seconds + longest


def _first_open(status: dict[str, dict[str, Any]]) -> str | None:
    """The first stage not done, from an episode's `stage_status`."""
    return next((n for n in stage_names() if status.get(n, {}).get("status") != "done"), None)


def _heard(status: dict[str, dict[str, Any]]) -> float:
    """When a worker last did something for the episode (claims, heartbeats, finished
    stages), from its `stage_status`; 0 if none has yet."""
    rows = status.values()
    beats = [r.get("heartbeat") or 0.0 for r in rows]
    finished = [_iso_seconds(r.get("finished_at")) for r in rows]
    return max([*beats, *finished, 0.0])


def _iso_seconds(value: str | None) -> float:
    if not value:
        return 0.0
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


def process_inbox(ctx: Context, *, wait: bool = True, stop: threading.Event | None = None,
                  on_progress: ProgressFn | None = None) -> RunReport:
    """`learncast run` with a queue: ingest, enqueue, wait for what was sent."""
    report = RunReport()
    coord = Coordinator(ctx, make_app(ctx.settings), on_progress)
    sweep_crash_debris(ctx)
    report.ingested += ingest_ready(ctx, wait=wait, stop=stop, report=report)
    coord.enqueue()
    poll = ctx.settings.queue.poll_seconds
    # What was ingested now but could not be sent yet (broker or storage out of reach) is
    # tried again for a while; after that the next run or a `watch` sends it.
    mine = {r.job_id for r in report.ingested if r.job_id and r.outcome in ("new", "requeued")}
    deadline = time.monotonic() + ENQUEUE_PATIENCE_S

    def unsent() -> bool:
        return time.monotonic() < deadline and any(
            (j := ctx.db.get(i)) is not None and j.status is Status.QUEUED for i in mine)

    while (coord.following or unsent()) and not (stop is not None and stop.is_set()):
        report.processed += coord.look()
        coord.enqueue()  # also episodes queued meanwhile (an approval, a retry)
        if coord.following or unsent():
            (stop or threading.Event()).wait(poll)
    if stop is not None and stop.is_set() and coord.following:
        log.warning("[queue] stopped waiting; %d episode(s) go on on the workers: %s",
                    len(coord.following), ", ".join(coord.following))
    _publish_scheduled(ctx)
    return report


def watch(ctx: Context, stop: threading.Event, on_progress: ProgressFn | None = None,
          on_report: Callable[[RunReport], None] | None = None) -> None:
    """`learncast watch` with a queue: keep ingesting and enqueuing; report what stops."""
    from pipeline import ingest

    sweep_crash_debris(ctx)
    coord = Coordinator(ctx, make_app(ctx.settings), on_progress)
    for job in ctx.db.all():  # follow what earlier runs sent
        if job.status is Status.PROCESSING:
            coord.following[job.id] = job.stage
    scanner = ingest.InboxScanner(ctx.workspace.inbox, ctx.settings.ingest.settle_seconds)
    poll = min(ctx.settings.runner.poll_seconds, ctx.settings.queue.poll_seconds,
               max(ctx.settings.ingest.settle_seconds, 0.1))
    while not stop.is_set():
        report = RunReport()
        try:
            report.ingested = ingest_ready(ctx, wait=False, stop=stop, scanner=scanner)
            coord.enqueue()
            report.processed = coord.look()
            _publish_scheduled(ctx)
        except PipelineError as exc:  # the state store out of reach: keep watching
            log.error("[queue] %s", exc)
        if on_report and (report.ingested or report.processed):
            on_report(report)
        stop.wait(poll)
