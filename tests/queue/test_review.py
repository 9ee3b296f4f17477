"""The caption review page on a machine that shares no disk with the workers.

A recording goes through the workers to the review gate; `learncast review` in a third
workspace (neither the coordinator's nor a worker's) shows its captions and media, saves an
edit and approves; the workers then publish it with nobody running `learncast run`, and what
learners get carries the edit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts import Artifact
from pipeline.models import Status
from pipeline.review import service
from pipeline.review.app import create_app
from pipeline.state import open_state
from pipeline.workspace import Context, open_workspace
from tests.queue.cluster import Cluster, wait_for
from tests.queue.test_distributed import drop_recordings, stored_keys
from tests.review.test_app import csrf

EDIT = "Edited on the review machine, not a worker."


@pytest.mark.slow
def test_review_anywhere_edit_and_approval_reach_the_published_captions(
        cluster: Cluster, ffmpeg: str, shared_audio: Path, moto_server: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster
    c.env["LEARNCAST_REVIEW__AUDIO"] = "after-approval"
    c.start_worker("w1", "--queues", "asr,media")
    c.start_worker("w2", "--queues", "publish")  # gates, uploads: never saw the captions made
    drop_recordings(ffmpeg, shared_audio, c.coordinator / "inbox", ["audio"])
    run = c.run("run")
    out = c.finish(run, timeout=400)
    assert run.returncode == 0, out + c.log_tail()
    db = c.store()
    try:
        [job] = db.all()
        assert (job.status, job.stage) == (Status.AWAITING_REVIEW, "review"), (job.error,
                                                                               c.log_tail())
        held_copies = db.working_copies(job.id)
    finally:
        db.close()

    # the reviewer's machine: the same config, its own empty workspace
    for key, value in c.env.items():
        if key.startswith(("LEARNCAST_", "AWS_")):
            monkeypatch.setenv(key, value)
    ws = open_workspace(c.workspace("reviewer"))
    ws.ensure()
    state = open_state(ws)
    ctx = Context(workspace=ws, ffmpeg=ffmpeg, state=state)
    try:
        assert not list(ws.transcripts.rglob("*.vtt"))
        client = create_app(ctx, state).test_client()
        assert client.get("/").status_code == 200
        row = service.summary(ctx, job)
        assert row["has_captions"] and row["state"] == "needs-review", row
        page = client.get(f"/episodes/{job.id}").get_data(as_text=True)
        cues = service.load_cues(ctx, job)
        said = " ".join(cue.text for cue in cues).lower()
        assert "country" in said, said  # JFK's words, recognised on the asr worker
        assert "no captions yet" not in page
        audio = client.get(f"/episodes/{job.id}/media/audio")
        assert audio.status_code == 200
        assert len(audio.get_data()) == held_copies[Artifact.AUDIO].size
        vtt = client.get(f"/episodes/{job.id}/media/vtt").get_data(as_text=True)
        assert vtt.startswith("WEBVTT")

        token = csrf(page)
        first = cues[0]
        edited = client.post(f"/episodes/{job.id}/cues/1/edit", data={
            "csrf_token": token, "revision": "1", "reviewer": "Ana Ruiz",
            "start": f"{first.start:.3f}", "end": f"{first.end:.3f}", "text": EDIT})
        assert edited.status_code == 303, edited.get_data(as_text=True)
        now = state.get(job.id)
        assert now is not None and service.revision(now) == 2
        copies = state.working_copies(job.id)
        local = ws.abs(now.files[Artifact.VTT])
        assert EDIT in local.read_text(encoding="utf-8")
        assert copies[Artifact.VTT].sha256 != held_copies[Artifact.VTT].sha256
        assert Artifact.ASR_VTT in copies  # the recogniser's text, for the next reviewer
        replaced = held_copies[Artifact.VTT].key
        assert not [k for k in stored_keys("podcasts/learncast-work/", moto_server)
                    if k.endswith(replaced)]

        approved = client.post(f"/episodes/{job.id}/decision", data={
            "csrf_token": token, "revision": "2", "reviewer": "Ana Ruiz",
            "action": "approve"})
        assert approved.status_code == 303, approved.get_data(as_text=True)
        assert "the workers upload and publish it now" in client.get(
            approved.location).get_data(as_text=True)

        def published() -> bool:
            got = state.get(job.id)
            assert got is not None and got.status is not Status.FAILED, got and got.error
            return got.status is Status.PUBLISHED

        wait_for("the workers to publish the approved episode", published, c, timeout=180)
        done = state.get(job.id)
        assert done is not None and done.results.review is not None
        assert (done.results.review.revision, done.results.review.reviewer) == (2, "Ana Ruiz")
        learners = c.root / "published.vtt"
        ctx.storage.fetch(done.objects[Artifact.VTT].key, learners)
        assert EDIT in learners.read_text(encoding="utf-8")
        assert state.working_copies(job.id) == {}
    finally:
        state.close()
    assert stored_keys("podcasts/learncast-work/", moto_server) == []
