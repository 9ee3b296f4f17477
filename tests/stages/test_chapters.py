"""Stage "chapters": a JSON chapters 1.2 file from the sidecar's chapters, shifted past any
intro bumper; no file when the sidecar has none."""

from __future__ import annotations

import json

import pytest

from pipeline.stages import chapters
from pipeline.workspace import Context
from tests.feeds.fixtures import fixture_job

SHOW = "learning-weekly"


def test_writes_chapters_json_shifted_by_the_intro(ctx: Context) -> None:
    job = fixture_job(SHOW, 1, "Feedback that lands", duration=300.0, **{"chapters": [
                          {"start": 0, "title": "Why feedback fails"},
                          {"start": "1:30", "title": "The SBI model"},
                          {"start": "00:04:10.5", "title": "Practice & next steps 🎯"}]})
    job = job.with_measurements(content_offset_s=4.25, audio_duration_s=309.0)
    out = chapters.run(job, ctx)
    rel = out.files["chapters"]
    assert rel == f"work/{job.id}/chapters.json"
    doc = json.loads(ctx.workspace.abs(rel).read_text(encoding="utf-8"))
    assert doc["version"] == "1.2.0"
    assert doc["title"] == "Feedback that lands"
    assert doc["podcastName"] == "Learning Weekly"
    assert doc["chapters"] == [
        {"startTime": 0, "title": "Intro", "toc": False},
        {"startTime": 4.25, "title": "Why feedback fails"},
        {"startTime": 94.25, "title": "The SBI model"},
        {"startTime": 254.75, "title": "Practice & next steps 🎯"},
    ]


def test_chapters_after_the_end_are_left_out(ctx: Context,
                                             caplog: pytest.LogCaptureFixture) -> None:
    job = fixture_job(SHOW, 2, "Short one", **{"chapters": [
        {"start": 0, "title": "Start"}, {"start": 500, "title": "Too late"}]})
    job = job.with_measurements(audio_duration_s=120.0)
    out = chapters.run(job, ctx)
    doc = json.loads(ctx.workspace.abs(out.files["chapters"]).read_text())
    assert [c["title"] for c in doc["chapters"]] == ["Start"]
    assert "Too late" in caplog.text and "left out" in caplog.text


def test_no_chapters_no_file(ctx: Context) -> None:
    job = fixture_job(SHOW, 3, "No chapters")
    out = chapters.run(job, ctx)
    assert "chapters" not in out.files
    assert not (ctx.workspace.job_dir(job.id) / "chapters.json").exists()
