"""Stage "chapters": the episode's chapters in deliverable time, and their JSON file.

Chapters come from, in order: what a reviewer accepted or edited on the review page, the
sidecar, or — for episodes longer than `[chapters] suggest_min_duration_s` — the transcript's
topic shifts, marked `suggested` until a reviewer accepts them. All are times of the recording
as dropped, placed through the Timeline once, here; the result is what the package stage
writes into the MP3 and MP4, where the caption stage breaks cues, and what the JSON chapters
file (published beside the media, `podcast:chapters` in the feeds) says.
Episodes without chapters get neither file nor tag.
"""

from __future__ import annotations

import json

from pipeline.artifacts import Artifact
from pipeline.asr.types import Transcript
from pipeline.errors import PipelineError
from pipeline.feeds.chapters import (
    chapter_marks,
    mark_suggested,
    render_chapters,
    suggested_chapters,
)
from pipeline.fsutil import atomic_write_text
from pipeline.models import Job
from pipeline.sidecar import Chapter
from pipeline.workspace import Context

USES = (Artifact.TRANSCRIPT,)
MAKES = (Artifact.CHAPTERS,)


def _chosen(job: Job, ctx: Context) -> tuple[list[Chapter], bool]:
    """The chapters to place (recording time), and whether they are only suggested."""
    if job.results.chapter_review is not None:
        return list(job.results.chapter_review.chapters), False
    if job.metadata.chapters:
        return list(job.metadata.chapters), False
    cfg = ctx.settings.chapters
    if (not cfg.suggest or not ctx.has_input(Artifact.TRANSCRIPT)
            or job.timeline.content_duration_s < cfg.suggest_min_duration_s):
        return [], False
    stored = ctx.input(Artifact.TRANSCRIPT)
    try:
        words = Transcript.from_dict(json.loads(stored.read_text(encoding="utf-8"))).words
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{ctx.workspace.rel(stored)} is not a valid transcript ({exc}); "
                            f"run `learncast retry {job.id} --from transcribe`") from exc
    found = suggested_chapters(words, job.timeline, min_chapter_s=cfg.min_chapter_s,
                               window_s=cfg.window_s)
    if len(found) < 2:  # one topic throughout is no chapter list
        return [], False
    return found, True


def run(job: Job, ctx: Context) -> Job:
    duration = job.timeline.duration(Artifact.AUDIO)
    if duration is None:
        raise PipelineError(f"episode {job.id} has no encoded audio duration yet; run "
                            f"`learncast retry {job.id} --from encode`")
    chosen, suggested = _chosen(job, ctx)
    marks = chapter_marks(chosen, job.timeline, duration, opening=job.title)
    if suggested:
        marks = mark_suggested(marks)
    files = {a: p for a, p in job.files.items() if a is not Artifact.CHAPTERS}
    job = job.replace(files=files).with_results(chapters=marks)
    if not marks:
        return job
    dest = ctx.workspace.job_dir(job.id) / "chapters.json"
    atomic_write_text(dest, render_chapters(marks, title=job.title,
                                            podcast_name=ctx.settings.show(job.show).title))
    return job.with_file(Artifact.CHAPTERS, ctx.workspace.rel(dest))
