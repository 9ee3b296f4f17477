"""The Celery application: broker settings for at-least-once delivery, one task per stage.

Acks are late (a task is acknowledged after the stage is recorded done, or handed on), a task
whose worker process dies is delivered again (`task_reject_on_worker_lost`), and each worker
process takes one task at a time (prefetch 1: a long transcription never holds a second
episode hostage). Publishing to the broker is retried, so a Redis restart is ridden out. No
result backend: the state store says how an episode is doing.

`celery -A pipeline.queue.app inspect active` (and Flower) find the app here, built from the
workspace in `LEARNCAST_WORKSPACE` (or the current folder).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from celery import Celery, Task

from pipeline.config import Settings
from pipeline.queue.routing import QUEUES, queue_of, task_name
from pipeline.runner import STAGES

log = logging.getLogger(__name__)


def make_app(settings: Settings) -> Celery:
    q = settings.queue
    app = Celery("learncast", broker=q.url or "redis://localhost:6379/0",
                 set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_ignore_result=True,
        task_serializer="json", accept_content=["json"],
        task_default_queue="media",
        task_queues=None, task_create_missing_queues=True,
        task_routes={task_name(s.name): {"queue": queue_of(s.name)} for s in STAGES},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": q.visibility_timeout_s,
            # sweep for tasks of dead workers every 10 s (once the visibility timeout passed)
            "unacked_restore_interval": 10, "unacked_restore_throttle": 1,
            "socket_timeout": 30, "socket_connect_timeout": 10, "retry_on_timeout": True,
            "health_check_interval": 10,
        },
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 150, "interval_start": 0.2,
                                   "interval_step": 0.5, "interval_max": 2.0},
        worker_send_task_events=True,  # Flower and `celery events` see every task
        task_send_sent_event=True,
    )
    for stage in STAGES:
        _register(app, stage.name)
    return app


def _register(app: Celery, stage: str) -> None:
    # shared=False: the task belongs to this app only, not to Celery's process-wide registry
    # (a process that builds a second app, such as the review page beside a coordinator, would
    # otherwise re-register every task name with a DuplicateTaskNameWarning)
    @app.task(name=task_name(stage), bind=True, max_retries=None, ignore_result=True,
              shared=False)
    def run_stage(self: Task, job_id: str) -> str:
        from pipeline.queue import worker

        return worker.handle(self, stage, job_id)


def send(app: Celery, stage: str, job_id: str, countdown: float | None = None) -> None:
    """Enqueue `stage` of an episode on its queue."""
    options: dict[str, Any] = {"queue": queue_of(stage)}
    if countdown:
        options["countdown"] = countdown
    app.send_task(task_name(stage), args=[job_id], **options)


def waiting(app: Celery) -> set[tuple[str, str]] | None:
    """(stage, episode id) of every task waiting in the broker's queues to be taken, or None
    where the broker cannot be looked into (not Redis).

    A task taken by a worker is not here: it runs (the state store says so) or waits for its
    countdown in that worker's memory, where a Redis restart or a warm shutdown at the wrong
    moment can lose it (kombu keeps it aside until the visibility timeout, hours later). The
    coordinator tells those apart by this list: an episode nobody works on whose task is not
    waiting here has lost it. Kombu keeps a queue's messages in a Redis list of that name
    (one per priority; Learncast sends every task at the default priority)."""
    if not str(app.conf.broker_url).startswith("redis"):  # redis, rediss, redis+socket
        return None
    stages = {task_name(s.name): s.name for s in STAGES}
    found: set[tuple[str, str]] = set()
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        for queue in QUEUES:
            for raw in client.lrange(queue, 0, -1):
                try:
                    message = json.loads(raw)
                    body = message["body"]
                    if message.get("properties", {}).get("body_encoding") == "base64":
                        body = base64.b64decode(body)
                    args = json.loads(body)[0]
                    stage = stages.get(message["headers"]["task"])
                except (ValueError, KeyError, IndexError, TypeError):
                    continue  # not one of ours
                if stage is not None and args:
                    found.add((stage, str(args[0])))
    return found


def _default_app() -> Celery:
    from pipeline.workspace import open_workspace, resolve_root

    return make_app(open_workspace(resolve_root(None)).settings)


def __getattr__(name: str) -> Any:  # `celery -A pipeline.queue.app` reads `app` lazily
    if name in ("app", "celery"):
        return _default_app()
    raise AttributeError(name)


__all__ = ["QUEUES", "make_app", "send", "waiting"]
