"""Stage "chapters": the episode's chapters in deliverable time, and their JSON file.

The sidecar's chapters (times of the recording as dropped) are placed through the Timeline
once, here; the result is what the package stage writes into the MP3 and MP4, where the
caption stage breaks cues, and what the JSON chapters file (published beside the media,
`podcast:chapters` in the feeds) says.
Episodes without chapters get neither file nor tag.
"""

from __future__ import annotations

from pipeline.artifacts import Artifact
from pipeline.errors import PipelineError
from pipeline.feeds.chapters import chapter_marks, render_chapters
from pipeline.fsutil import atomic_write_text
from pipeline.models import Job
from pipeline.workspace import Context

MAKES = (Artifact.CHAPTERS,)


def run(job: Job, ctx: Context) -> Job:
    duration = job.timeline.duration(Artifact.AUDIO)
    if duration is None:
        raise PipelineError(f"episode {job.id} has no encoded audio duration yet; run "
                            f"`learncast retry {job.id} --from encode`")
    marks = chapter_marks(job.metadata.chapters, job.timeline, duration, opening=job.title)
    files = {a: p for a, p in job.files.items() if a is not Artifact.CHAPTERS}
    job = job.replace(files=files).with_results(chapters=marks)
    if not marks:
        return job
    dest = ctx.workspace.job_dir(job.id) / "chapters.json"
    atomic_write_text(dest, render_chapters(marks, title=job.title,
                                            podcast_name=ctx.settings.show(job.show).title))
    return job.with_file(Artifact.CHAPTERS, ctx.workspace.rel(dest))
