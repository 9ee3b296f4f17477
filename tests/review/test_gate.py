"""The review gate in the runner, approvals, the audit trail and republishing after edits."""

from __future__ import annotations

import pytest

from pipeline import runner
from pipeline.errors import InputError
from pipeline.models import Status
from pipeline.review import cues as cuelib
from pipeline.review import service
from pipeline.state import StateDB
from pipeline.workspace import Context, open_workspace
from tests.review.conftest import MakeEpisode


def test_video_waits_for_approval_then_the_runner_continues(ctx: Context, db: StateDB,
                                                           make_episode: MakeEpisode) -> None:
    job = make_episode("video")
    assert (job.status, job.stage) == (Status.AWAITING_REVIEW, "review")
    assert db.stage_status(job.id)["review"]["status"] == "held"
    assert service.review_state(ctx, job) == "needs-review"
    # running again does not let it through
    runner.work_queue(ctx)
    assert db.get(job.id).status is Status.AWAITING_REVIEW  # type: ignore[union-attr]

    with pytest.raises(InputError, match="say what needs to change"):
        service.decide(ctx, job.id, action="request-changes", reviewer="Ana",
                       expected_revision=1)
    service.decide(ctx, job.id, action="request-changes", reviewer="Ana",
                   expected_revision=1, note="cue 2 misspells a name")
    assert service.review_state(ctx, db.get(job.id)) == "changes-requested"  # type: ignore[arg-type]
    approved = service.decide(ctx, job.id, action="approve", reviewer=" Ana  Lopez ",
                              expected_revision=1)
    assert approved.status is Status.QUEUED
    assert db.get(job.id).status is Status.QUEUED  # type: ignore[union-attr]
    runner.work_queue(ctx)
    done = db.get(job.id)
    assert done is not None and db.stage_status(job.id)["review"]["status"] == "done"
    assert done.results.review is not None
    assert (done.results.review.reviewer, done.results.review.revision) == ("Ana Lopez", 1)
    trail = db.reviews(job.id)
    assert [(r["reviewer"], r["action"], r["revision"]) for r in trail] == [
        ("Ana", "request-changes", 1), ("Ana Lopez", "approve", 1)]
    assert trail[0]["note"] == "cue 2 misspells a name" and trail[1]["at"]


def test_audio_passes_at_once_by_default_and_shows_can_require_approval(
        ctx: Context, db: StateDB, make_episode: MakeEpisode, workspace_dir) -> None:
    job = make_episode("audio", name="briefing")
    assert db.stage_status(job.id)["review"]["status"] == "done"
    assert job.results.review is not None and job.results.review.mode == "immediate"

    config = workspace_dir / "config" / "learncast.toml"
    config.write_text(config.read_text().replace('review = "auto"',
                                                 'review = "after-approval"'))
    strict = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg)
    assert service.review_mode(strict, job) == "after-approval"
    video = make_episode("video", name="demo")
    config.write_text(config.read_text().replace('review = "after-approval"',
                                                 'review = "immediate"'))
    relaxed = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg)
    assert service.review_mode(relaxed, video) == "immediate"


def test_an_edit_needs_a_new_approval_and_keeps_the_asr_original(
        ctx: Context, db: StateDB, make_episode: MakeEpisode) -> None:
    job = make_episode("video")
    service.decide(ctx, job.id, action="approve", reviewer="Ana", expected_revision=1)
    job = db.get(job.id)
    assert job is not None and service.approval(ctx, job) is not None
    # the runner has not picked it up yet; the reviewer edits again: no longer editable
    with pytest.raises(InputError, match="pipeline is working on it"):
        service.save_cues(ctx, job.id, service.load_cues(ctx, job), reviewer="Ana",
                          expected_revision=1, what="noop")
    db.save(job.replace(status=Status.AWAITING_REVIEW))
    job = db.get(job.id)
    assert job is not None
    vtt = ctx.workspace.abs(job.files["vtt"])
    original = vtt.read_text()
    cues = cuelib.edit(service.load_cues(ctx, job), 1, text="Today we look at the\n"
                       "travel expense policy.", start=2.2, end=4.0)
    job = service.save_cues(ctx, job.id, cues, reviewer="Bo", expected_revision=1,
                            what="edited cue 2")
    assert service.revision(job) == 2 and service.approval(ctx, job) is None
    assert ctx.workspace.abs(job.files["asr_vtt"]).read_text() == original
    assert "travel expense policy." in vtt.read_text()
    for key in ("srt", "txt", "html"):
        assert "travel expense" in ctx.workspace.abs(job.files[key]).read_text()
    assert job.measurements["review_edit_distance_words"] == 1
    assert job.measurements["review_asr_words"] == 22
    with pytest.raises(service.ConflictError, match="revision 1, now 2"):
        service.decide(ctx, job.id, action="approve", reviewer="Ana", expected_revision=1)
    # a second edit is measured against the recogniser's text, not the previous revision
    cues = cuelib.merge(service.load_cues(ctx, job), 0, 42)
    job = service.save_cues(ctx, job.id, cues, reviewer="Bo", expected_revision=2,
                            what="merged cue 1 with cue 2")
    assert job.measurements["review_edit_distance_words"] == 1
    assert ctx.workspace.abs(job.files["asr_vtt"]).read_text() == original
    assert [r["action"] for r in db.reviews(job.id)] == ["approve", "edit", "edit"]


def test_editing_a_published_episode_republishes(ctx: Context, db: StateDB,
                                                 make_episode: MakeEpisode) -> None:
    audio = make_episode("audio", name="briefing")  # immediate
    for stage in ("upload", "publish"):
        db.stage_started(audio.id, stage)
        db.stage_finished(audio, stage, 0.1)
    db.save(audio.replace(status=Status.PUBLISHED, stage=None))
    audio = db.get(audio.id)
    assert audio is not None
    cues = cuelib.edit(service.load_cues(ctx, audio), 0, text="Welcome, everyone.",
                       start=0.5, end=2.0)
    audio = service.save_cues(ctx, audio.id, cues, reviewer="Cy", expected_revision=1,
                              what="edited cue 1")
    assert (audio.status, audio.stage) == (Status.QUEUED, "package")
    stages = db.stage_status(audio.id)
    assert not {"package", "review", "upload", "publish"} & set(stages)
    assert stages["chapters"]["status"] == "done"  # nothing before packaging is redone

    video = make_episode("video", name="demo")  # after-approval
    service.decide(ctx, video.id, action="approve", reviewer="Cy", expected_revision=1)
    runner.work_queue(ctx)
    video = db.get(video.id)
    assert video is not None
    db.save(video.replace(status=Status.PUBLISHED, stage=None))
    video = db.get(video.id)
    assert video is not None
    cues = cuelib.split(service.load_cues(ctx, video), 0, 2, 42)
    video = service.save_cues(ctx, video.id, cues, reviewer="Cy", expected_revision=1,
                              what="split cue 1")
    assert (video.status, video.stage) == (Status.AWAITING_REVIEW, "review")
    assert "review" not in db.stage_status(video.id)
    service.decide(ctx, video.id, action="approve", reviewer="Dee", expected_revision=2)
    runner.work_queue(ctx)
    again = db.get(video.id)
    assert again is not None and again.results.review is not None
    assert (again.results.review.reviewer, again.results.review.revision) == ("Dee", 2)


def test_an_approval_covers_only_the_caption_file_it_was_given(
        ctx: Context, db: StateDB, make_episode: MakeEpisode) -> None:
    job = make_episode("video")
    service.decide(ctx, job.id, action="approve", reviewer="Ana", expected_revision=1)
    # the captions are rewritten behind the page's back (say, the caption stage ran again)
    vtt = ctx.workspace.abs(job.files["vtt"])
    vtt.write_text(vtt.read_text().replace("Thanks for listening.", "Thanks for nothing."))
    runner.work_queue(ctx)
    held = db.get(job.id)
    assert held is not None and (held.status, held.stage) == (Status.AWAITING_REVIEW, "review")
    assert service.review_state(ctx, held) == "needs-review"
    service.decide(ctx, held.id, action="approve", reviewer="Ana", expected_revision=1)
    runner.work_queue(ctx)
    assert db.stage_status(job.id)["review"]["status"] == "done"


def test_editing_a_failed_episode_needs_the_gate_again_on_retry(
        ctx: Context, db: StateDB, make_episode: MakeEpisode) -> None:
    job = make_episode("video")
    service.decide(ctx, job.id, action="approve", reviewer="Ana", expected_revision=1)
    runner.work_queue(ctx)
    passed = db.get(job.id)
    assert passed is not None
    db.stage_started(job.id, "upload")
    db.stage_failed(job.id, "upload", "storage down")
    db.save(passed.replace(status=Status.FAILED, stage="upload", error="storage down"))
    failed = db.get(job.id)
    assert failed is not None
    cues = cuelib.edit(service.load_cues(ctx, failed), 0, text="Welcome aboard.", start=0.5,
                       end=2.0)
    edited = service.save_cues(ctx, failed.id, cues, reviewer="Bo", expected_revision=1,
                               what="edited cue 1")
    assert edited.status is Status.FAILED and "review" not in db.stage_status(job.id)
    runner.retry(ctx, edited)
    runner.work_queue(ctx)
    held = db.get(job.id)
    assert held is not None and (held.status, held.stage) == (Status.AWAITING_REVIEW, "review")
