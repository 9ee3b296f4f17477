"""Suggested chapters on the review page: they hold a reviewed episode at the gate until a
reviewer accepts or edits them; accepted, they reach the MP3, the MP4 and the JSON chapters
through the same timeline as sidecar chapters."""

from __future__ import annotations

import json
import re

import av
from mutagen.id3 import ID3

from pipeline import runner
from pipeline.models import ChapterMark, Job, SoundbiteResult, Status
from pipeline.review import service
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.review.conftest import MakeEpisode
from tests.review.test_app import client_for, csrf

SUGGESTED = [ChapterMark(start=0.0, end=4.2, title="Onboarding course", suggested=True),
             ChapterMark(start=4.2, end=8.0, title="Expense policy", suggested=True)]


def _held_with_suggestions(db: StateDB, make_episode: MakeEpisode) -> Job:
    job = make_episode("video")
    assert (job.status, job.stage) == (Status.AWAITING_REVIEW, "review")
    job = job.with_results(chapters=SUGGESTED)
    db.save(job)
    return job


def test_suggested_chapters_hold_the_gate_until_accepted_then_reach_every_deliverable(
        ctx: Context, db: StateDB, make_episode: MakeEpisode) -> None:
    job = _held_with_suggestions(db, make_episode)
    assert service.chapters_pending(job)
    # approving the captions alone does not let it through
    approved = service.decide(ctx, job.id, action="approve", reviewer="Ana",
                              expected_revision=1)
    assert approved.status is Status.AWAITING_REVIEW
    assert service.approval(ctx, approved) is not None

    client = client_for(ctx, db)
    page = client.get(f"/episodes/{job.id}").get_data(as_text=True)
    assert "Accept chapters" in page and "suggested: accept or edit" in page
    assert 'value="Expense policy"' in page
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    assert digest
    form = {"csrf_token": csrf(page), "digest": digest.group(1), "count": "2",
            "reviewer": "Ana", "start-1": "00:00:00.000", "title-1": "Welcome",
            "start-2": "00:00:04.200", "title-2": "Expense policy",
            "start-3": "6.2", "title-3": "Thanks"}
    stale = client.post(f"/episodes/{job.id}/chapters", data={**form, "digest": "0" * 16})
    assert stale.status_code == 409 and "changed since you opened" in stale.get_data(True)
    no_title = client.post(f"/episodes/{job.id}/chapters", data={**form, "title-2": " "})
    assert no_title.status_code == 400
    saved = client.post(f"/episodes/{job.id}/chapters", data=form)
    assert saved.status_code == 303

    queued = db.get(job.id)
    assert queued is not None and queued.status is Status.QUEUED  # captions approved already
    assert queued.results.chapter_review is not None
    assert [r["action"] for r in db.reviews(job.id)] == ["approve", "chapters"]
    assert service.approval(ctx, queued) is not None  # a chapter change is no caption change

    runner.work_queue(ctx)
    done = db.get(job.id)
    assert done is not None and done.status is Status.PUBLISHED
    marks = done.results.chapters or []
    assert [(m.start, m.title, m.suggested) for m in marks] == [
        (0.0, "Welcome", False), (4.2, "Expense policy", False), (6.2, "Thanks", False)]
    published = {a: ctx.workspace.public / o.key for a, o in done.objects.items()}
    doc = json.loads(published["chapters"].read_text())
    assert [(c["startTime"], c["title"]) for c in doc["chapters"]] == [
        (0.0, "Welcome"), (4.2, "Expense policy"), (6.2, "Thanks")]
    with av.open(str(published["video"])) as c:
        in_mp4 = [(round(float(ch["start"] * ch["time_base"]), 3), ch["metadata"]["title"])
                  for ch in c.chapters()]
    assert in_mp4 == [(0.0, "Welcome"), (4.2, "Expense policy"), (6.2, "Thanks")]
    id3 = ID3(published["audio"])
    assert [(f.start_time, str(f.sub_frames["TIT2"])) for f in id3.getall("CHAP")] == [
        (0, "Welcome"), (4200, "Expense policy"), (6200, "Thanks")]


def test_without_an_approval_accepted_chapters_keep_waiting_for_it(
        ctx: Context, db: StateDB, make_episode: MakeEpisode) -> None:
    job = _held_with_suggestions(db, make_episode)
    out = service.save_chapters(ctx, job.id, [(0.0, "Welcome"), (4.2, "Policy")],
                                reviewer="Ana", expected=service.chapters_digest(job))
    assert (out.status, out.stage) == (Status.AWAITING_REVIEW, "review")
    runner.work_queue(ctx)
    held = db.get(job.id)
    assert held is not None and held.status is Status.AWAITING_REVIEW
    assert not service.chapters_pending(held)
    approved = service.decide(ctx, job.id, action="approve", reviewer="Ana",
                              expected_revision=1)
    assert approved.status is Status.QUEUED


def test_the_soundbites_are_listed_and_playable(ctx: Context, db: StateDB,
                                                make_episode: MakeEpisode) -> None:
    job = make_episode("video")
    clip = ctx.workspace.job_dir(job.id) / "clip.mp3"
    clip.write_bytes(ctx.workspace.abs(job.files["audio"]).read_bytes())
    job = job.with_file("soundbite_1", ctx.workspace.rel(clip)).with_results(
        soundbites=[SoundbiteResult(start=2.2, duration=15.0, title="The <expense> policy",
                                    origin="transcript")])
    db.save(job)
    client = client_for(ctx, db)
    page = client.get(f"/episodes/{job.id}").get_data(as_text=True)
    assert "Soundbites" in page and "“The &lt;expense&gt; policy”" in page
    assert "chosen from the transcript" in page
    src = f"/episodes/{job.id}/media/soundbite_1"
    assert f'src="{src}"' in page and 'aria-label="Soundbite 1: The &lt;expense&gt; policy"' in page
    served = client.get(src)
    assert served.status_code == 200 and served.data == clip.read_bytes()
    assert client.get(f"/episodes/{job.id}/media/soundbite_2").status_code == 404
