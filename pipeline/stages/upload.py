"""Upload an episode's deliverables (media, captions, transcripts, chapters) to storage.

Keys are `<show>/<episode slug>/<episode slug>-<sha256 prefix><suffix>`: ASCII only (Apple
rejects non-ASCII enclosure URLs), one per episode and rendition, and new whenever the bytes
change, so a re-rendered MP3 gets a new URL and no CDN or podcast app can serve the stale one
(which is also why these objects may be cached for a year as immutable). Unchanged objects are
not sent again. What is stored is recorded in `job.objects[artifact]` for the feeds, which are
uploaded later and only point at objects confirmed here.

Keys a re-render replaced stay in storage until the feeds no longer point at them; they are
listed in `measurements["upload"]["superseded"]` for a later clean-up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fsutil import sha256_file, slugify
from pipeline.models import Job
from pipeline.storage.base import content_type_for
from pipeline.storage.publish import PublishItem, publish_files, storage_for
from pipeline.workspace import Context

log = logging.getLogger(__name__)

#: What is uploaded, in publish order, with the key suffix ("" = the file's own suffix).
ARTIFACTS: dict[str, str] = {
    "audio": "",
    "video": "",
    "vtt": ".vtt",
    "srt": ".srt",
    "txt": ".txt",
    "html": ".html",
    "chapters": ".chapters.json",
}
CHAPTERS_TYPE = "application/json+chapters"


def object_key(job: Job, artifact: str, local: Path, sha256: str) -> str:
    """`<show>/<slug>/<slug>-<sha256[:12]><suffix>`: stable for the same bytes, ASCII-safe."""
    suffix = ARTIFACTS[artifact] or local.suffix.lower()
    slug = slugify(job.slug, max_length=100) or job.id
    show = slugify(job.show, max_length=63) or "show"
    return f"{show}/{slug}/{slug}-{sha256[:12]}{suffix}"


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    cache_control = ctx.settings.storage.media_cache_control
    planned: list[tuple[str, PublishItem]] = []
    media_types: dict[str, str] = {}
    for artifact in ARTIFACTS:
        rel = job.files.get(artifact)
        if not rel:
            continue
        local = ws.abs(rel)
        if not local.is_file():
            raise PipelineError(f"the {artifact} file {rel} of episode {job.id} is missing; "
                                f"run `learncast retry {job.id}` to produce it again")
        sha = sha256_file(local)
        key = object_key(job, artifact, local, sha)
        ctype = CHAPTERS_TYPE if artifact == "chapters" else content_type_for(key)
        media_types[artifact] = ctype
        planned.append((artifact, PublishItem(local, key, cache_control, ctype, sha)))
    if not planned:
        log.warning("[upload] %s has no deliverables (%s) yet; nothing uploaded", job.id,
                    ", ".join(ARTIFACTS))
        return job

    results = publish_files(storage_for(ctx), [item for _, item in planned])

    objects = {k: v for k, v in job.objects.items() if k not in ARTIFACTS}
    for (artifact, item), result in zip(planned, results, strict=True):
        objects[artifact] = {"key": result.key, "url": result.url, "size": result.stored.size,
                             "sha256": item.sha256, "content_type": media_types[artifact]}
    current = {o["key"] for o in objects.values()}
    previous = job.measurements.get("upload", {}).get("superseded", [])
    superseded = sorted({*previous, *(o["key"] for a, o in job.objects.items()
                                      if a in ARTIFACTS)} - current)
    sent = [r for r in results if r.uploaded]
    figures = {"uploaded": len(sent), "unchanged": len(results) - len(sent),
               "bytes_sent": sum(r.stored.size for r in sent), "superseded": superseded}
    log.info("[upload] %s: %d object(s) uploaded (%d bytes), %d unchanged", job.id,
             figures["uploaded"], figures["bytes_sent"], figures["unchanged"])
    return job.replace(objects=objects).with_measurements(upload=figures)
