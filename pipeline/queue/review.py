"""The caption review page on any machine: its files come from, and go back to, the episode's
working copies.

With a queue, the captions, QA report and media a reviewer opens were made by workers on
other machines, and the stages after the gate run there too. So `learncast review` works like
a worker: what the page reads is fetched from the working copies into its own workspace when
missing or stale (`transfer.fetch_files`); what an edit rewrites (caption renditions, the
word-level JSON, the QA report, the recogniser's original captions) is stored back as working
copies in the same transaction that records the new revision, so the worker that packages,
gates and uploads the episode next fetches that revision; and an episode that a decision
queues (an approval) is handed to the workers at once, as `run`/`watch` would hand it on.
`pipeline.review.service` calls in here only when `[queue] url` is set; the embedded path
reads and writes its own workspace, as always.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator

from celery import Celery

from pipeline.artifacts import CAPTION_FILES, Artifact
from pipeline.errors import InputError, PipelineError
from pipeline.models import Job, Status
from pipeline.queue import transfer
from pipeline.workspace import Context

log = logging.getLogger(__name__)

#: What a caption edit rewrites, and what the page reads with the cues.
CAPTION_SET: tuple[Artifact, ...] = (*CAPTION_FILES, Artifact.WORDS, Artifact.QA,
                                     Artifact.ASR_VTT)
#: The episode this thread is editing: its files here are the new ones, not to be fetched
#: over until they are stored (the page serves requests in threads).
_editing = threading.local()


def fetch(ctx: Context, job: Job, artifacts: Iterable[Artifact]) -> None:
    """Bring the episode's `artifacts` into this workspace, current; a storage fault is the
    reviewer's to retry (InputError: the page shows it), not a crash of the page."""
    if getattr(_editing, "job_id", None) == job.id:
        return
    try:
        transfer.fetch_files(ctx, job, artifacts, "review")
    except InputError:
        raise
    except PipelineError as exc:
        raise InputError(f"could not fetch the files of episode {job.id} from storage: {exc}. "
                         "Check that storage answers, then reload the page") from exc


@contextlib.contextmanager
def editing(ctx: Context, job_id: str) -> Iterator[Job]:
    """The episode locked (`StateStore.locked`) with its caption files here and current. When
    the block ends without error, the files it changed are stored as working copies within
    the same transaction (a worker never sees the new revision with old files), the copies
    they replace are deleted once that is committed, and an episode the block queued is sent
    to the workers."""
    db = ctx.db
    replaced: list[str] = []
    with db.locked(job_id) as job:
        fetch(ctx, job, CAPTION_SET)
        _editing.job_id = job_id
        try:
            yield job
        finally:
            _editing.job_id = None
        after = db.get(job_id)  # joins the transaction: sees what the block wrote
        if after is not None:
            here = [a for a in CAPTION_SET
                    if a in after.files and ctx.workspace.abs(after.files[a]).is_file()]
            try:
                copies, replaced = transfer.store_files(ctx, after, here, "the review page")
            except InputError:
                raise
            except PipelineError as exc:
                raise InputError(f"could not store the edited captions of episode {job_id} "
                                 f"({exc}); nothing was saved. Try again when storage "
                                 "answers") from exc
            db.copies_stored(job_id, copies)
    transfer.delete_keys(ctx, job_id, replaced)
    hand_on(ctx, job_id)


def hand_on(ctx: Context, job_id: str) -> None:
    """An episode queued by a decision (an approval; an edit of one that publishes without
    review) goes to the workers now, so nobody has to run `learncast run`. If the broker is
    out of reach it stays queued, and a `watch` or the next `run` sends it."""
    job = ctx.db.get(job_id)
    if job is None or job.status is not Status.QUEUED:
        return
    from pipeline.queue.coordinator import Coordinator

    Coordinator(ctx, _celery(ctx)).enqueue(job_id)
    now = ctx.db.get(job_id)
    if now is not None and now.status is Status.QUEUED:
        log.warning("[review] %s: could not send it to the workers yet; a running `learncast "
                    "watch` or the next `learncast run` sends it", job_id)


def _celery(ctx: Context) -> Celery:
    """One Celery app per review process. It only sends tasks, and a reviewer waits for the
    answer: a broker out of reach is given a few seconds, not the workers' minutes."""
    app: Celery | None = ctx.resources.get("celery_app")
    if app is None:
        from pipeline.queue.app import make_app

        app = ctx.resources["celery_app"] = make_app(ctx.settings)
        app.conf.task_publish_retry_policy = {"max_retries": 3, "interval_start": 0.2,
                                              "interval_step": 0.5, "interval_max": 1.0}
    return app
