"""Stage "chapters": the sidecar's chapters placed once through the Timeline (trim and intro),
written as a JSON chapters 1.2 file; no file when the sidecar has none."""

from __future__ import annotations

import json

import pytest

from pipeline.artifacts import Timeline
from pipeline.runner import call_stage
from pipeline.stages import chapters
from pipeline.workspace import Context
from tests.feeds.fixtures import fixture_job

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
