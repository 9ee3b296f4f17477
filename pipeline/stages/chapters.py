"""Stage "chapters": the episode's JSON chapters file, when its sidecar lists chapters.

Runs after encode (it needs `content_offset_s`, where the content starts after an intro
bumper) and before upload, which publishes the file; the feed then points at it with
`podcast:chapters`. Episodes without chapters get no file and no tag.
"""

from __future__ import annotations

from pipeline.feeds.chapters import write_chapters
from pipeline.models import Job
from pipeline.workspace import Context


def run(job: Job, ctx: Context) -> Job:
    if not job.metadata.chapters:
        return job
    ws = ctx.workspace
    dest = ws.job_dir(job.id) / "chapters.json"
    offset = float(job.measurements.get("content_offset_s", 0) or 0)
    duration = job.measurements.get("audio_duration_s")
    if not isinstance(duration, int | float):
        duration = (job.probe.duration_s + offset) if job.probe else None
    write_chapters(dest, job.metadata.chapters, offset_s=offset, duration_s=duration,
                   title=job.title, podcast_name=ctx.settings.show(job.show).title)
    return job.with_file("chapters", ws.rel(dest))
