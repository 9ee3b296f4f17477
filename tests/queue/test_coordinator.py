"""The coordinator's watch over episodes in flight, against a real Redis broker: a task the
broker lost is sent again; one still waiting in its queue, or one only briefly quiet, is not.

Redis loses a task a worker held (a countdown's retry, a prefetched message) when it restarts
or the worker stops at the wrong moment: kombu keeps it aside until the visibility timeout,
hours later. Here the loss is made directly: the queue's list is emptied. Slow only because
`make test-slow` is what installs redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from pipeline import runner
from pipeline.queue.app import make_app, waiting
from pipeline.queue.coordinator import Coordinator, stall_seconds
from pipeline.queue.routing import queue_of
from pipeline.workspace import Context
from tests.servers import Redis


@pytest.mark.slow
def test_a_lost_task_is_sent_again_and_a_waiting_one_is_not(
        ctx: Context, redis_server: Redis, tone: Callable[..., Path]) -> None:
    settings = ctx.settings.model_copy(update={
        "queue": ctx.settings.queue.model_copy(update={"url": redis_server.url})})
    app = make_app(settings)
    broker = redis.Redis.from_url(redis_server.url)
    tone(ctx.workspace.inbox / "talk.wav", seconds=2)
    runner.ingest_ready(ctx, wait=True)
    [job] = ctx.db.take_queued()  # processing, its first task never sent (or lost)
    first = runner.stage_names()[0]
    long_ago = time.time() - stall_seconds(ctx.settings) - 1

    def watcher(quiet_since: float | None) -> Coordinator:
        coord = Coordinator(ctx, app)
        if quiet_since is not None:
            coord.quiet_since[(job.id, first)] = quiet_since
        return coord

    # quiet only briefly (this coordinator has just started): a countdown may still be running
    watcher(None).rescue([job])
    assert waiting(app) == set()

    # quiet for longer than any countdown, and not in the broker: lost, sent again
    watcher(long_ago).rescue([job])
    assert waiting(app) == {(first, job.id)}
    assert [e["message"] for e in ctx.db.events(job.id) if e["kind"] == "resent"] == [
        f"{first}: its task was lost by the broker"]

    # waiting in its queue behind others: left alone, however long it waits
    watcher(long_ago).rescue([job])
    assert broker.llen(queue_of(first)) == 1

    # a worker's claim is news: quiet counts from it, not from when the coordinator looked
    broker.delete(queue_of(first))
    ctx.db.claim_stage(job.id, first, lease_s=120)
    ctx.db.stage_retry_later(job.id, first, "storage out of reach")
    watcher(long_ago).rescue([job])
    assert waiting(app) == set()
