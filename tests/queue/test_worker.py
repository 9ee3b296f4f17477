"""A stage task on a worker, without a broker: claims, idempotency, working copies.

Three workspaces on one machine stand for three machines: the coordinator that ingests, and
two workers. They share only the state database and the object store (a storage folder that
none of their workspaces contains). `dispatch` records the tasks a worker would send.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import runner
from pipeline.artifacts import Artifact
from pipeline.config import Settings
from pipeline.models import Status
from pipeline.queue import routing, transfer, worker
from pipeline.queue.app import make_app
from pipeline.state import StateDB
from pipeline.storage.local import LocalStorage
from pipeline.workspace import Context, init_workspace, open_workspace


@pytest.fixture
def machines(tmp_path: Path, ctx: Context, ffmpeg: str,
             ) -> Iterator[tuple[Context, Context, Context]]:
    store = LocalStorage(root=tmp_path / "object-store", base_url="http://store.invalid")
    coordinator = dataclasses.replace(ctx, resources={"storage": store})
    workers = []
    for name in ("w1", "w2"):
        init_workspace(tmp_path / name)
        ws = open_workspace(tmp_path / name)
        ws.ensure()
        workers.append(Context(workspace=ws, ffmpeg=ffmpeg, resources={"storage": store},
                               state=StateDB(ctx.workspace.state_db)))
    yield coordinator, workers[0], workers[1]
    for w in workers:
        w.db.close()


def test_every_stage_has_a_queue_and_a_task() -> None:
    assert {routing.queue_of(s.name) for s in runner.STAGES} == set(routing.QUEUES)
    assert routing.queue_of("transcribe") == "asr" and routing.queue_of("encode") == "media"
    assert routing.queue_of("upload") == routing.queue_of("publish") == "publish"
    app = make_app(Settings())
    assert {routing.task_name(s.name) for s in runner.STAGES} <= set(app.tasks)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_publish_retry
    task = routing.task_name("transcribe")
    with warnings.catch_warnings():  # a second app in one process (the review page beside
        warnings.simplefilter("error")  # a coordinator) has its own tasks, and no warning
        assert make_app(Settings()).tasks[task] is not app.tasks[task]  # (tasks: lazy)


def test_a_stage_runs_once_and_its_outputs_travel_through_storage(
        machines: tuple[Context, Context, Context], tone) -> None:
    coord, w1, w2 = machines
    tone(coord.workspace.inbox / "talk.wav", seconds=3)
    runner.ingest_ready(coord, wait=True)
    [job] = coord.db.take_queued()
    assert job.status is Status.PROCESSING
    transfer.share_original(coord, job)
    sent: list[tuple[str, str]] = []

    def dispatch(stage: str, job_id: str) -> None:
        sent.append((stage, job_id))

    assert worker.execute(w1, "prepare", job.id, dispatch) == "done"
    assert sent == [("trim", job.id)]
    made = w1.workspace.abs(w1.db.get(job.id).files[Artifact.SOURCE_AUDIO])  # type: ignore[union-attr]
    assert made.is_file() and made.is_relative_to(w1.workspace.root)
    copy = w1.db.working_copies(job.id)[Artifact.SOURCE_AUDIO]
    assert copy.key.startswith("learncast-work/") and copy.sha256 == transfer.sha256_file(made)

    # delivered again: not redone (the file is untouched), the next stage is sent again
    before = made.stat().st_mtime_ns
    assert worker.execute(w2, "prepare", job.id, dispatch) == "already done"
    assert made.stat().st_mtime_ns == before
    assert coord.db.stage_status(job.id)["prepare"]["attempts"] == 1

    # trim on the other worker, which has never seen the episode: its input is fetched
    assert worker.execute(w2, "trim", job.id, dispatch) == "done"
    fetched = w2.workspace.abs(copy.path)
    assert transfer.sha256_file(fetched) == copy.sha256

    # a task for a stage whose predecessor is not done is stale: skipped
    assert worker.execute(w1, "transcribe", job.id, dispatch).startswith("skipped")

    # a stage held by a live worker elsewhere: look again later
    coord.db.claim_stage(job.id, "normalise", lease_s=60)
    other = StateDB(coord.workspace.state_db)
    try:
        other.owner = "elsewhere:1:1"
        with other.transaction() as c:  # that other machine holds it, heartbeating
            from pipeline.state.schema import stage_runs

            c.execute(stage_runs.update().where(stage_runs.c.episode_id == job.id,
                                                stage_runs.c.stage == "normalise")
                      .values(owner=other.owner))
        later = worker.execute(w1, "normalise", job.id, dispatch)
        assert isinstance(later, worker.Later)
    finally:
        other.close()


def test_finished_episodes_leave_no_working_copies(
        machines: tuple[Context, Context, Context], tone) -> None:
    coord, w1, _ = machines
    tone(coord.workspace.inbox / "short.wav", seconds=2)
    runner.ingest_ready(coord, wait=True)
    [job] = coord.db.take_queued()
    transfer.share_original(coord, job)
    queue = [(runner.STAGES[0].name, job.id)]
    while queue:
        stage, job_id = queue.pop(0)
        assert worker.execute(w1, stage, job_id, lambda s, j: queue.append((s, j))) == "done"
    done = coord.db.get(job.id)
    assert done is not None and done.status is Status.PUBLISHED
    assert coord.db.working_copies(job.id) == {}
    store = coord.storage
    assert isinstance(store, LocalStorage)
    assert not (store.root / "learncast-work").exists() or not any(
        p.is_file() for p in (store.root / "learncast-work").rglob("*"))
    # the published media are there, under their public keys
    assert store.stat(done.objects[Artifact.AUDIO].key) is not None
    # the worker's scratch copies go; the coordinator's archived original never does
    transfer.prune_workspace(w1)
    assert not w1.workspace.job_dir(job.id).exists()
    assert coord.workspace.abs(done.original).is_file()
