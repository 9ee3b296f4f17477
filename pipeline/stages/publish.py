"""Stage "publish": put the episode into its show's feeds, feeds last.

By now the upload stage has stored the media and transcripts and recorded them in
`job.objects`. This stage uploads the chapters file if upload did not, measures the durations
of the published renditions (apps show `itunes:duration`), remembers when the episode was first
published (its stable `pubDate` when the sidecar names no date), then rebuilds the show's feeds
from the state database — every published episode plus this one — validates them against
Apple's rules and uploads them through the storage backend. An episode whose sidecar date is
in the future is left out of the feeds until then; `learncast publish` or `watch` adds it.
"""

from __future__ import annotations

import datetime as dt
import logging

from pipeline import media
from pipeline.errors import InputError, PipelineError
from pipeline.feeds.build import episode_date
from pipeline.feeds.chapters import CHAPTERS_CONTENT_TYPE
from pipeline.feeds.publish import publish_show
from pipeline.fsutil import sha256_file
from pipeline.models import Job
from pipeline.state import StateDB
from pipeline.storage.publish import storage_for
from pipeline.workspace import Context

log = logging.getLogger(__name__)

MEDIA_CACHE_CONTROL = "public, max-age=31536000, immutable"


def run(job: Job, ctx: Context) -> Job:
    if "audio" not in job.objects and "video" not in job.objects:
        raise PipelineError(f"episode {job.id} has no uploaded audio or video (job.objects is "
                            "empty), so there is nothing to put in a feed; the upload stage "
                            f"must run first — run `learncast retry {job.id}`")
    _check_stored(job, ctx)
    job = _upload_chapters(job, ctx)
    job = _measure_durations(job, ctx)
    if "published_at" not in job.measurements:
        job = job.with_measurements(
            published_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    when = episode_date(job)
    if when > dt.datetime.now(dt.UTC):
        log.info("[publish] %s is scheduled for %s; it appears in the feeds from then "
                 "(`learncast publish` or `learncast watch` adds it)", job.id,
                 when.isoformat(timespec="minutes"))
    db = ctx.resources.get("state_db")
    own = db is None
    if own:
        db = StateDB(ctx.workspace.state_db)
    try:
        results = publish_show(ctx, db, job.show, include=job)
    finally:
        if own:
            db.close()
    return job.with_measurements(feeds={r.kind: r.url for r in results})


def _check_stored(job: Job, ctx: Context) -> None:
    """The feed will point at these objects: make sure the storage still holds them, whole."""
    storage = storage_for(ctx)
    for artifact, obj in job.objects.items():
        stored = storage.stat(obj["key"])
        if stored is None or stored.size != int(obj["size"]):
            found = ("is missing" if stored is None
                     else f"has {stored.size} bytes, not {obj['size']}")
            raise PipelineError(f"the uploaded {artifact} of episode {job.id} ({obj['key']}) "
                                f"{found} in storage ({storage.name}); the feed must not point "
                                "at it. Restore the object (or re-run the upload stage), then "
                                f"run `learncast retry {job.id}`")


def _upload_chapters(job: Job, ctx: Context) -> Job:
    rel = job.files.get("chapters")
    if not rel or "chapters" in job.objects:
        return job
    path = ctx.workspace.abs(rel)
    if not path.is_file():
        raise PipelineError(f"the chapters file {rel} of episode {job.id} is missing; run "
                            f"`learncast retry {job.id}` after re-running the chapters stage")
    storage = storage_for(ctx)
    key = f"episodes/{job.show}/{job.slug}/chapters.json"
    sha = sha256_file(path)
    stored = storage.put(path, key, content_type=CHAPTERS_CONTENT_TYPE,
                         cache_control="public, max-age=300", sha256=sha)
    obj = {"key": key, "url": storage.url(key), "size": stored.size, "sha256": sha,
           "content_type": CHAPTERS_CONTENT_TYPE}
    return job.replace(objects={**job.objects, "chapters": obj})


def _measure_durations(job: Job, ctx: Context) -> Job:
    """Duration of each published rendition, probed once from the local deliverable (it
    includes intro/outro bumpers, unlike the recording's probe)."""
    figures = {}
    for kind in ("audio", "video"):
        name = f"{kind}_duration_s"
        rel = job.files.get(kind)
        if kind not in job.objects or name in job.measurements or not rel:
            continue
        path = ctx.workspace.abs(rel)
        if not path.is_file():
            continue
        try:
            figures[name] = media.probe(path).duration_s
        except InputError as exc:
            raise PipelineError(f"the {kind} deliverable {rel} cannot be read ({exc}); run "
                                f"`learncast retry {job.id}` to encode it again") from exc
    return job.with_measurements(**figures) if figures else job
