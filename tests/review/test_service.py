"""Reviewers at the same moment: the revision check and the write are one step, so an edit is
never silently lost and an approval never lands on captions it did not see. Two state
connections stand for two review servers (or a server and the runner), as in production."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from pipeline.errors import InputError
from pipeline.models import Status
from pipeline.review import cues as cuelib
from pipeline.review import service
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.review.conftest import MakeEpisode

ROUNDS = 5


def _at_once(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions in threads released together; each result or the exception raised."""
    barrier = threading.Barrier(len(actions))
    out: list[Any] = [None] * len(actions)

    def run(k: int) -> None:
        barrier.wait()
        try:
            out[k] = actions[k]()
        except Exception as exc:  # the outcome under test
            out[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _contexts(ctx: Context) -> tuple[Context, Context]:
    return (dataclasses.replace(ctx, state=StateDB(ctx.workspace.state_db)),
            dataclasses.replace(ctx, state=StateDB(ctx.workspace.state_db)))


def test_two_reviewers_saving_the_same_revision(ctx: Context, db: StateDB,
                                                make_episode: MakeEpisode) -> None:
    job = make_episode("video")
    one, two = _contexts(ctx)
    for k in range(ROUNDS):
        rev = service.revision(db.get(job.id))  # type: ignore[arg-type]
        cues = service.load_cues(ctx, job)
        a = cuelib.edit(cues, 0, text=f"Welcome, round {k}, from Ana.", start=0.5, end=2.0)
        b = cuelib.edit(cues, 3, text=f"Thanks, round {k}, from Bo.", start=6.2, end=7.6)
        results = _at_once(
            lambda a=a, rev=rev: service.save_cues(one, job.id, a, reviewer="Ana",
                                                   expected_revision=rev, what="cue 1"),
            lambda b=b, rev=rev: service.save_cues(two, job.id, b, reviewer="Bo",
                                                   expected_revision=rev, what="cue 4"))
        saved = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, service.ConflictError)]
        assert len(saved) == 1 and len(refused) == 1, results
        now = db.get(job.id)
        assert now is not None and service.revision(now) == rev + 1
        text = ctx.workspace.abs(now.files["vtt"]).read_text()
        assert (f"round {k}, from Ana." in text) != (f"round {k}, from Bo." in text)
    edits = [r for r in db.reviews(job.id) if r["action"] == "edit"]
    assert len(edits) == ROUNDS  # one audit row per edit that took effect, none for refusals


def test_approve_and_edit_at_the_same_moment(ctx: Context, db: StateDB,
                                             make_episode: MakeEpisode) -> None:
    one, two = _contexts(ctx)
    for k in range(ROUNDS):
        job = make_episode("video", name=f"race{k}", seconds=8.0 + 0.2 * k)
        cues = cuelib.edit(service.load_cues(ctx, job), 0, text="Welcome, edited.",
                           start=0.5, end=2.0)
        approve, edit = _at_once(
            lambda job=job: service.decide(one, job.id, action="approve", reviewer="Ana",
                                           expected_revision=1),
            lambda job=job, cues=cues: service.save_cues(two, job.id, cues, reviewer="Bo",
                                                         expected_revision=1, what="cue 1"))
        now = db.get(job.id)
        assert now is not None
        if isinstance(approve, service.ConflictError):  # the edit came first
            assert not isinstance(edit, Exception), edit
            assert service.revision(now) == 2 and now.status is Status.AWAITING_REVIEW
            assert service.approval(ctx, now) is None  # revision 2 was never approved
        else:  # the approval came first: the queued episode is not edited under the runner
            assert not isinstance(approve, Exception), approve
            assert isinstance(edit, InputError) and "working on it" in str(edit), edit
            assert service.revision(now) == 1 and now.status is Status.QUEUED
            assert service.approval(ctx, now) is not None  # and it covers what it approved
