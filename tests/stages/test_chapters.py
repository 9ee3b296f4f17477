"""Stage "chapters": the sidecar's chapters placed once through the Timeline (trim and intro),
written as a JSON chapters 1.2 file; no file when the sidecar has none."""

from __future__ import annotations

import json

import pytest

from pipeline.artifacts import Artifact, Timeline
from pipeline.asr.types import Word
from pipeline.models import ChapterMark, ChapterReview, Job
from pipeline.runner import call_stage
from pipeline.sidecar import Chapter
from pipeline.stages import chapters
from pipeline.workspace import Context
from tests.feeds.fixtures import fixture_job
from tests.stages.finishing import with_settings
from tests.text.talk import BUDGET, FEEDBACK, KUBERNETES, say

SHOW = "learning-weekly"


def _timeline(**kw: object) -> Timeline:
    return Timeline.model_validate({"source_duration_s": 310.0, "kept": [[1.2, 310.0]],
                                    "intro_s": 4.25, "durations": {"audio": 313.05}, **kw})


def test_chapters_follow_trim_and_intro(ctx: Context) -> None:
    job = fixture_job(SHOW, 1, "Feedback that lands", duration=300.0, **{"chapters": [
                          {"start": 0, "title": "Why feedback fails"},
                          {"start": "1:30", "title": "The SBI model"},
                          {"start": "00:04:10.5", "title": "Practice & next steps 🎯"}]})
    job = job.with_results(timeline=_timeline())
    out = call_stage(chapters, job, ctx)
    rel = out.files["chapters"]
    assert rel == f"work/{job.id}/chapters.json"
    doc = json.loads(ctx.workspace.abs(rel).read_text(encoding="utf-8"))
    assert doc["version"] == "1.2.0"
    assert doc["title"] == "Feedback that lands"
    assert doc["podcastName"] == "Learning Weekly"
    # 1.2 s trimmed from the head, a 4.25 s intro in front: the first chapter (inside the
    # trimmed head) starts where the content does
    assert doc["chapters"] == [
        {"startTime": 0.0, "title": "Intro", "toc": False},
        {"startTime": 4.25, "title": "Why feedback fails"},
        {"startTime": 93.05, "title": "The SBI model"},
        {"startTime": 253.55, "title": "Practice & next steps 🎯"},
    ]
    marks = out.results.chapters
    assert [m.start for m in marks] == [c["startTime"] for c in doc["chapters"]]
    assert [m.end for m in marks] == [4.25, 93.05, 253.55, 313.05]


def test_chapters_after_the_end_or_inside_a_cut_are_left_out(
        ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    job = fixture_job(SHOW, 2, "Short one", **{"chapters": [
        {"start": 0, "title": "Start"}, {"start": 1.0, "title": "Cut away"},
        {"start": 500, "title": "Too late"}]})
    job = job.with_results(timeline=_timeline(intro_s=0.0, durations={"audio": 120.0}))
    out = call_stage(chapters, job, ctx)
    doc = json.loads(ctx.workspace.abs(out.files["chapters"]).read_text())
    assert [c["title"] for c in doc["chapters"]] == ["Cut away"]
    assert "Too late" in caplog.text and "left out" in caplog.text
    assert "replaces it" in caplog.text


def test_no_chapters_no_file(ctx: Context) -> None:
    job = fixture_job(SHOW, 3, "No chapters").with_results(timeline=_timeline())
    out = call_stage(chapters, job, ctx)
    assert "chapters" not in out.files and out.results.chapters == []
    assert not (ctx.workspace.job_dir(job.id) / "chapters.json").exists()


# --- suggested chapters --------------------------------------------------------------------


def _with_transcript(ctx: Context, job: Job, words: list[Word]) -> Job:
    dest = ctx.workspace.job_dir(job.id) / "transcript.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    listed = [w.to_dict() for w in words]
    dest.write_text(json.dumps({"language": "en", "duration_s": words[-1].end, "text": "",
                                "words": listed, "segments": [{
                                    "start": 0.0, "end": words[-1].end, "text": "",
                                    "words": listed}]}))
    return job.with_file(Artifact.TRANSCRIPT, ctx.workspace.rel(dest))


def _talk_job(ctx: Context, n: int, **metadata: object) -> tuple[Job, list[Word]]:
    words = say(KUBERNETES + FEEDBACK + BUDGET)
    length = words[-1].end + 2.0
    job = fixture_job(SHOW, n, "Three topics", duration=length, **metadata)  # type: ignore[arg-type]
    timeline = Timeline(source_duration_s=length + 3.0, kept=((3.0, length + 3.0),),
                        intro_s=4.25, durations={"audio": length + 4.25})
    return _with_transcript(ctx, job.with_results(timeline=timeline), words), words


def test_long_episodes_without_chapters_get_suggested_ones_through_the_timeline(
        ctx: Context) -> None:
    job, words = _talk_job(ctx, 4)
    short = call_stage(chapters, job, ctx)  # 165 s: under the 5-minute default
    assert short.results.chapters == [] and "chapters" not in short.files
    lower = with_settings(ctx, chapters={"suggest_min_duration_s": 60})
    out = call_stage(chapters, job, lower)
    marks = out.results.chapters or []
    listed = [m for m in marks if m.toc]
    assert [m.suggested for m in listed] == [True] * 3
    assert marks[0] == ChapterMark(start=0.0, end=4.25, title="Intro", toc=False)
    assert listed[0].start == 4.25  # the content's start, after the intro
    # the topic shifts, in deliverable time (content + 4.25 s intro)
    sents = [w for w in words if w.text.startswith(("Now", "Finally"))]
    for mark, first in zip(listed[1:], sents, strict=True):
        assert abs(mark.start - (first.start + 4.25)) <= 1.0, (marks, first)
    doc = json.loads(lower.workspace.abs(out.files["chapters"]).read_text())
    assert [c["startTime"] for c in doc["chapters"]] == [m.start for m in marks]
    assert "suggested" not in json.dumps(doc)  # the JSON chapters format has no such field


def test_sidecar_chapters_and_reviewed_ones_are_not_suggested(ctx: Context) -> None:
    lower = with_settings(ctx, chapters={"suggest_min_duration_s": 60})
    job, _ = _talk_job(ctx, 5, chapters=[{"start": 3.0, "title": "All of it"}])
    marks = call_stage(chapters, job, lower).results.chapters or []
    assert [(m.title, m.suggested) for m in marks] == [("Intro", False), ("All of it", False)]
    reviewed = job.with_results(chapter_review=ChapterReview(
        chapters=[Chapter(start=3.0, title="Pods"), Chapter(start=60.0, title="Feedback")],
        reviewer="Rita", at="2026-12-01T10:00:00+00:00"))
    marks = call_stage(chapters, reviewed, lower).results.chapters or []
    assert [(m.start, m.title, m.suggested) for m in marks] == [
        (0.0, "Intro", False), (4.25, "Pods", False), (61.25, "Feedback", False)]
