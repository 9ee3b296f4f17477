"""Stage "package": the deliverables learners get, with everything a player shows in-file.

The MP3 gets ID3v2.3 tags (title, show, author, season/episode, year, description), the cover
art and CHAP/CTOC chapters; the MP4 gets the same chapters, the captions as a `mov_text` track
and the cover. Chapters come from the chapters stage's result (one list in deliverable time),
so ID3, MP4 and JSON chapters are the same instants. Nothing is re-encoded: the MP3 is copied
and tagged, the MP4 remuxed, so this stage is cheap enough to run again whenever a reviewer
edits the captions.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pipeline.artifacts import Artifact
from pipeline.audio.id3 import Tags, cover_jpeg, write_tags
from pipeline.audio.mp4 import package_mp4
from pipeline.config import ShowSettings
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path
from pipeline.images import artwork_size
from pipeline.models import Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.ENCODED_AUDIO,)
USES = (Artifact.ENCODED_VIDEO, Artifact.VTT)
MAKES = (Artifact.AUDIO, Artifact.VIDEO)


def _cover(ctx: Context, show: ShowSettings) -> Path | None:
    cover = ctx.workspace.abs(show.artwork) if show.artwork else None
    if cover is not None and not cover.is_file():
        log.warning("[package] show artwork %s not found; the deliverables have no cover art. "
                    "Put a square JPEG/PNG there or fix shows.artwork", show.artwork)
        return None
    if cover is not None:  # its size, from the header, before any pixel is decoded
        artwork_size(cover, ctx.settings.ingest.max_artwork_pixels)
    return cover


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    show = ctx.settings.show(job.show)
    meta = job.metadata
    chapters = job.results.chapters or []
    cover = _cover(ctx, show)
    year = (meta.publish_date or job.created_at).year
    out_dir = ws.job_dir(job.id)

    mp3 = out_dir / f"{job.slug}.mp3"
    with atomic_path(mp3) as tmp:
        shutil.copyfile(ctx.input(Artifact.ENCODED_AUDIO), tmp)
        write_tags(tmp, Tags(title=job.title, show=show.title, author=show.author,
                             description=meta.description or "", year=year,
                             season=meta.season, episode=meta.episode, cover=cover,
                             chapters=list(chapters)))
    job = job.with_file(Artifact.AUDIO, ws.rel(mp3))

    if job.kind == "video":
        if not ctx.has_input(Artifact.ENCODED_VIDEO):
            raise PipelineError(f"episode {job.id} is a video but has no encoded MP4; run "
                                f"`learncast retry {job.id} --from encode`")
        duration = job.timeline.duration(Artifact.VIDEO) or 0.0
        vtt = ctx.inputs.get(Artifact.VTT)
        captions = vtt if vtt is not None and "-->" in vtt.read_text(encoding="utf-8") else None
        language = job.results.captions.language if job.results.captions else show.language
        mp4 = out_dir / f"{job.slug}.mp4"
        package_mp4(ctx.ffmpeg, ctx.input(Artifact.ENCODED_VIDEO), mp4, work=out_dir,
                    chapters=chapters, captions=captions, language=language,
                    cover_jpeg=cover_jpeg(cover) if cover else None,
                    metadata={"title": job.title, "album": show.title, "artist": show.author,
                              "date": str(year), "comment": meta.description or ""},
                    duration_s=duration)
        job = job.with_file(Artifact.VIDEO, ws.rel(mp4))
    log.info("[package] %s: %d chapter(s)%s", job.id, len(chapters),
             ", captions and cover in the MP4" if job.kind == "video" else "")
    return job
