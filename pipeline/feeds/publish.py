"""Publishing, in one place: episode objects into storage, then feeds, skipping what is stored.

A podcast app that fetches a feed must find every enclosure, transcript and chapters file the
feed points at. So objects go first (`upload_episode`, the upload stage), are confirmed in
storage with their sha256 (`publish_episode`, the publish stage), and only then is a show's
feed rebuilt from the state database, validated against Apple's rules and stored
(`publish_show`, also used by `learncast publish` and by `watch` for scheduled episodes). If
anything fails on the way, it raises before the first feed is touched: the previously published
feed stays as it was and keeps pointing at objects that still exist. Objects already stored with
the same bytes and headers are not sent again; `unpublish` takes an episode out in the reverse
order (feeds first, objects after).

Object keys are `<show>/<episode slug>/<episode slug>-<sha256 prefix><suffix>`: ASCII only
(Apple rejects non-ASCII enclosure URLs) and new whenever the bytes change, so a re-rendered MP3
gets a new URL and no CDN or app serves the stale one — which is why media, captions, chapters
and artwork are sent with `storage.media_cache_control` (immutable) and feeds with the short
`storage.feed_cache_control`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.artifacts import PUBLISHED, SOUNDBITE_VIDEOS, SOUNDBITES, Artifact
from pipeline.config import ShowSettings
from pipeline.errors import ConfigError, PipelineError, RetryableError
from pipeline.feeds.build import (
    FEED_FILES,
    FeedKind,
    FeedSpec,
    build_feed,
    enclosure,
    episode_date,
    feed_episodes,
    rendition,
)
from pipeline.feeds.guid import podcast_guid
from pipeline.feeds.validate import (
    FeedValidationError,
    check_artwork,
    feed_warnings,
    validate_feed,
)
from pipeline.fsutil import atomic_write_bytes, sha256_file, slugify
from pipeline.models import Job, PublishRecord, Status, StoredArtifact, UploadResult
from pipeline.storage.base import (
    PRIVATE_PREFIX,
    StorageBackend,
    StoredObject,
    content_type_for,
    http_content_type,
)
from pipeline.workspace import Context

log = logging.getLogger(__name__)

FEED_CONTENT_TYPE = "application/rss+xml; charset=utf-8"
#: Key suffix per published artifact ("" = the file's own suffix).
KEY_SUFFIX: dict[Artifact, str] = {
    Artifact.AUDIO: "", Artifact.VIDEO: "", Artifact.VTT: ".vtt", Artifact.SRT: ".srt",
    Artifact.TXT: ".txt", Artifact.HTML: ".html", Artifact.CHAPTERS: ".chapters.json",
    Artifact.AUDIOGRAM: ".audiogram.mp4",
    **{a: f".soundbite{k}.mp3" for k, a in enumerate(SOUNDBITES, 1)},
    **{a: f".soundbite{k}.mp4" for k, a in enumerate(SOUNDBITE_VIDEOS, 1)},
}
def _private(ctx: Context, show_id: str) -> str:
    try:
        return PRIVATE_PREFIX if ctx.settings.show(show_id).private else ""
    except KeyError:
        return ""


# --- storing files: skip what is stored, confirm, feeds strictly last --------------------

@dataclass(frozen=True)
class PublishItem:
    """One local file to store under `key`. `sha256` is computed when not given."""

    local: Path
    key: str
    cache_control: str
    content_type: str = ""  # empty = from the key's suffix
    sha256: str | None = None

    @property
    def type(self) -> str:
        """The Content-Type header it is stored with."""
        return http_content_type(self.content_type or content_type_for(self.key))


@dataclass(frozen=True)
class PublishResult:
    key: str
    stored: StoredObject
    url: str
    uploaded: bool  # False: the same bytes and headers were already stored, nothing was sent


def is_current(stored: StoredObject | None, *, size: int, sha256: str, content_type: str,
               cache_control: str) -> bool:
    """Whether `stored` already holds these bytes with these headers."""
    return (stored is not None and stored.sha256 == sha256 and stored.size == size
            and stored.content_type == content_type and stored.cache_control == cache_control)


def publish_one(backend: StorageBackend, item: PublishItem) -> PublishResult:
    """Store one file unless the backend already holds the same content; confirm the result."""
    if not item.local.is_file():
        raise PipelineError(f"cannot publish {item.key}: the local file {item.local} is missing; "
                            "run the episode again with `learncast retry ID`")
    sha = item.sha256 or sha256_file(item.local)
    size = item.local.stat().st_size
    current = backend.stat(item.key)
    if current is not None and is_current(current, size=size, sha256=sha,
                                          content_type=item.type,
                                          cache_control=item.cache_control):
        log.info("[storage] %s unchanged; not uploaded again", item.key)
        return PublishResult(item.key, current, backend.url(item.key), uploaded=False)
    stored = backend.put(item.local, item.key, content_type=item.type,
                         cache_control=item.cache_control, sha256=sha)
    if stored.sha256 != sha or stored.size != size:
        raise RetryableError(f"{item.key} was stored as {stored.size} bytes with sha256 "
                             f"{stored.sha256}, expected {size} bytes with {sha}; retrying")
    log.info("[storage] stored %s (%d bytes)", item.key, size)
    return PublishResult(item.key, stored, backend.url(item.key), uploaded=True)


def confirm_stored(backend: StorageBackend, expected: Mapping[str, str | None]) -> None:
    """Raise unless every key is stored (with the given sha256, where one is given)."""
    for key, sha in expected.items():
        stored = backend.stat(key)
        if stored is None:
            raise PipelineError(f"{key} is missing from storage, so the feed was not updated "
                                "(it still points at what it pointed at before). Upload the "
                                "episode again with `learncast retry ID`")
        if sha is not None and stored.sha256 != sha:
            raise PipelineError(f"{key} in storage has other content (sha256 {stored.sha256}, "
                                f"expected {sha}), so the feed was not updated. Upload the "
                                "episode again with `learncast retry ID`")


def publish_files(backend: StorageBackend, items: Sequence[PublishItem], *,
                  feeds: Sequence[PublishItem] = (),
                  referenced: Mapping[str, str | None] | None = None,
                  ) -> list[PublishResult]:
    """Store `items` in order, confirm them and `referenced`, and only then store `feeds`.

    `referenced` maps keys uploaded earlier (by the upload stage; `job.objects[*].key` →
    `.sha256`) that the feeds point at; they are checked, not uploaded. Any error is raised
    before the first feed is written.
    """
    results = [publish_one(backend, item) for item in items]
    expected: dict[str, str | None] = dict(referenced or {})
    expected.update({r.key: r.stored.sha256 for r in results})
    if feeds:
        confirm_stored(backend, expected)
    results += [publish_one(backend, feed) for feed in feeds]
    return results


def delete_keys(backend: StorageBackend, keys: Sequence[str],
                on_deleted: Callable[[str], None] | None = None) -> None:
    """Delete objects (missing ones are fine); `on_deleted` hears of each one."""
    for key in keys:
        backend.delete(key)
        log.info("[storage] deleted %s", key)
        if on_deleted:
            on_deleted(key)


# --- an episode's objects -----------------------------------------------------------------


def object_key(job: Job, artifact: Artifact, local: Path, sha256: str) -> str:
    """`<show>/<slug>/<slug>-<sha256[:12]><suffix>`: stable for the same bytes, ASCII-safe."""
    suffix = KEY_SUFFIX[artifact] or local.suffix.lower()
    slug = slugify(job.slug, max_length=100) or job.id
    show = slugify(job.show, max_length=63) or "show"
    return f"{show}/{slug}/{slug}-{sha256[:12]}{suffix}"


def upload_episode(ctx: Context, job: Job, files: Mapping[Artifact, Path]) -> Job:
    """Store the episode's deliverables (`files`: what of PUBLISHED it has, resolved) and
    record each stored object in `job.objects` for the feeds."""
    cache_control = ctx.settings.storage.media_cache_control
    planned: list[tuple[Artifact, PublishItem]] = []
    for artifact in PUBLISHED:
        local = files.get(artifact)
        if local is None:
            continue
        sha = sha256_file(local)
        key = _private(ctx, job.show) + object_key(job, artifact, local, sha)
        planned.append((artifact, PublishItem(local, key, cache_control,
                                              content_type_for(key), sha)))
    results = publish_files(ctx.storage, [item for _, item in planned])

    objects = {a: o for a, o in job.objects.items() if a not in PUBLISHED}
    for (artifact, item), result in zip(planned, results, strict=True):
        objects[artifact] = StoredArtifact(key=result.key, url=result.url,
                                           size=result.stored.size, sha256=str(item.sha256),
                                           content_type=content_type_for(item.key))
    current = {o.key for o in objects.values()}
    previous = job.results.upload.superseded if job.results.upload else []
    superseded = sorted({*previous, *(o.key for a, o in job.objects.items()
                                      if a in PUBLISHED)} - current)
    sent = [r for r in results if r.uploaded]
    log.info("[upload] %s: %d object(s) uploaded (%d bytes), %d unchanged", job.id, len(sent),
             sum(r.stored.size for r in sent), len(results) - len(sent))
    return job.replace(objects=objects).with_results(
        upload=UploadResult(superseded=superseded)).with_measurements(
        upload={"uploaded": len(sent), "unchanged": len(results) - len(sent),
                "bytes_sent": sum(r.stored.size for r in sent)})


def check_stored(ctx: Context, job: Job) -> None:
    """The feed will point at these objects: make sure the storage still holds them, whole."""
    for artifact, obj in job.objects.items():
        stored = ctx.storage.stat(obj.key)
        if stored is None or stored.size != obj.size:
            found = ("is missing" if stored is None
                     else f"has {stored.size} bytes, not {obj.size}")
            raise PipelineError(f"the uploaded {artifact.value} of episode {job.id} ({obj.key}) "
                                f"{found} in storage ({ctx.storage.name}); the feed must not "
                                "point at it. Restore the object (or re-run the upload stage), "
                                f"then run `learncast retry {job.id}`")


def publish_episode(ctx: Context, job: Job) -> Job:
    """Put an uploaded episode into its show's feeds (the publish stage)."""
    if Artifact.AUDIO not in job.objects and Artifact.VIDEO not in job.objects:
        raise PipelineError(f"episode {job.id} has no uploaded audio or video, so there is "
                            "nothing to put in a feed; the upload stage must run first — run "
                            f"`learncast retry {job.id} --from upload`")
    check_stored(ctx, job)
    record = job.results.publication or PublishRecord(
        published_at=dt.datetime.now(dt.UTC).replace(microsecond=0))
    job = job.with_results(publication=record)
    when = episode_date(job)
    if when > dt.datetime.now(dt.UTC):
        log.info("[publish] %s is scheduled for %s; it appears in the feeds from then "
                 "(`learncast publish` or `learncast watch` adds it)", job.id,
                 when.isoformat(timespec="minutes"))
    results = publish_show(ctx, job.show, include=job)
    feeds = {r.kind: r.url for r in results}
    live = (job.results.captions.revision if job.results.captions else 1) \
        if Artifact.VTT in job.files else None
    return job.with_results(publication=record.model_copy(
        update={"feeds": feeds, "captions_revision": live}))


# --- feeds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedResult:
    show: str
    kind: FeedKind
    key: str
    url: str
    path: Path
    items: int
    uploaded: bool


def feed_key(show: ShowSettings, kind: FeedKind, token: str) -> str:
    if show.private:  # each learner's own URL is the secret (pipeline.learners)
        return f"{PRIVATE_PREFIX}feeds/{show.id}/{FEED_FILES[kind]}"
    folder = f"{show.id}-{token}" if show.feed_token and token else show.id
    return f"feeds/{folder}/{FEED_FILES[kind]}"


def _in_feeds(job: Job) -> bool:
    """Published, or past the point of publishing: in the publish stage with its publication
    record stored (another process put it into the feeds and will mark it published)."""
    return job.status is Status.PUBLISHED or (
        job.status is Status.PROCESSING and job.stage == "publish"
        and job.results.publication is not None)


def published_episodes(ctx: Context, show: str, include: Job | None = None) -> list[Job]:
    """Episodes that belong in the show's feeds: published ones (see `_in_feeds`), plus
    `include` (the episode being published right now, whose status is not `published` yet)."""
    jobs = [j for j in ctx.db.all(show=show) if _in_feeds(j)
            and (include is None or j.id != include.id)]
    if include is not None:
        jobs.append(include)
    return jobs


def _artwork(ctx: Context, storage: StorageBackend, show: ShowSettings
             ) -> tuple[PublishItem, str, Path]:
    """The show artwork, checked, under a content-addressed key (apps cache artwork by URL,
    so a new image needs a new URL). Returns (what to store, its URL, local path)."""
    path = ctx.workspace.abs(show.artwork)
    problems = check_artwork(path)
    if problems:
        raise FeedValidationError(f"of show {show.id}", [f"channel: {p}" for p in problems])
    with Image.open(path) as im:
        ext, mime = (".jpg", "image/jpeg") if im.format == "JPEG" else (".png", "image/png")
    sha = sha256_file(path)
    key = f"{PRIVATE_PREFIX if show.private else ''}shows/{show.id}/artwork-{sha[:16]}{ext}"
    cache_control = ctx.settings.storage.media_cache_control
    return (PublishItem(path, key, cache_control, content_type=mime, sha256=sha),
            storage.url(key), path)


def publish_show(ctx: Context, show_id: str, *, include: Job | None = None,
                 now: dt.datetime | None = None) -> list[FeedResult]:
    """Rebuild and validate every feed of one show, then store artwork and (changed) feeds.

    Nothing is stored unless every feed is valid, and the artwork is confirmed in storage
    before any feed is put. (The publish stage has confirmed the objects of `include`, the
    episode being published now.) One publisher per show at a time (`StateStore.publishing`):
    two `watch` processes, or two publish workers, each finishing an episode of one show would
    otherwise each store a feed without the other's.
    """
    try:
        show = ctx.settings.show(show_id)
    except KeyError:
        raise ConfigError(f"show {show_id!r} is not configured (configured: "
                          f"{', '.join(ctx.settings.show_ids)}); add a [[shows]] entry for it "
                          "in config/learncast.toml") from None
    with ctx.db.publishing(show.id):
        if include is not None:
            # its publication record first: a publisher of this show that comes next builds
            # with this episode in, although the runner marks it published only afterwards
            ctx.db.save(include)
        return _publish_show(ctx, show, include, now or dt.datetime.now(dt.UTC))


def _publish_show(ctx: Context, show: ShowSettings, include: Job | None, now: dt.datetime
                  ) -> list[FeedResult]:
    storage, db = ctx.storage, ctx.db
    jobs = published_episodes(ctx, show.id, include)
    known = {row["feed"] for row in db.feed_rows(show.id)}
    kinds: list[FeedKind] = ["audio"]
    if "video" in known or any(rendition(j, "video") is not None for j in jobs):
        kinds.append("video")
    artwork, artwork_url, artwork_path = _artwork(ctx, storage, show)

    built: list[tuple[FeedKind, str, bytes, list[Job]]] = []
    problems: list[str] = []
    for kind in kinds:
        guid, token = db.feed_identity(
            show.id, kind, url_for=lambda t, k=kind: storage.url(feed_key(show, k, t)),
            guid_for=podcast_guid, new_token=lambda: secrets.token_hex(16))
        key = feed_key(show, kind, token)
        episodes = feed_episodes(jobs, kind, show, now)
        xml = build_feed(FeedSpec(show=show, kind=kind, url=storage.url(key), guid=guid,
                                  artwork_url=artwork_url, episodes=tuple(episodes)))
        lengths = {media.url: media.size for j in episodes
                   if (media := enclosure(j, kind)) is not None}
        found = validate_feed(xml, artwork=artwork_path, expected_lengths=lengths)
        problems += [f"{FEED_FILES[kind]}: {p}" for p in found]
        for warning in feed_warnings(xml) if not found else []:
            log.warning("[publish] %s %s: %s", show.id, FEED_FILES[kind], warning)
        built.append((kind, key, xml, episodes))
    if problems:
        raise FeedValidationError(f"of show {show.id}", problems)

    feeds = []
    for kind, key, xml, _ in built:
        local = ctx.workspace.feeds / show.id / FEED_FILES[kind]
        if not local.is_file() or local.read_bytes() != xml:
            atomic_write_bytes(local, xml)
        feeds.append(PublishItem(local, key, ctx.settings.storage.feed_cache_control,
                                 content_type=FEED_CONTENT_TYPE, sha256=sha256_file(local)))
    stored = publish_files(storage, [artwork], feeds=feeds)
    results = []
    for (kind, key, _, episodes), feed, result in zip(built, feeds, stored[1:], strict=True):
        log.info("[publish] %s feed of %s %s: %s (%d episodes)", kind, show.id,
                 "uploaded" if result.uploaded else "unchanged", result.url, len(episodes))
        db.feed_published(show.id, kind, sha256=str(feed.sha256), url=result.url,
                          items=[j.id for j in episodes])
        results.append(FeedResult(show.id, kind, key, result.url, feed.local, len(episodes),
                                  result.uploaded))
    return results


class PublishError(PipelineError):
    """Some shows could not be published; the others were. Carries both."""

    def __init__(self, results: list[FeedResult], failures: dict[str, str]) -> None:
        self.results = results
        self.failures = failures
        super().__init__("\n".join(f"show {show}: {reason}"
                                   for show, reason in failures.items()))


def publish_all(ctx: Context, *, shows: Iterable[str] | None = None,
                now: dt.datetime | None = None) -> list[FeedResult]:
    """`learncast publish`: every (or the chosen) show's feeds, rebuilt and republished.

    A show that fails (invalid feed, storage error) does not keep the others from being
    published; PublishError lists the failures and carries what did get published."""
    results: list[FeedResult] = []
    failures: dict[str, str] = {}
    for show_id in shows or ctx.settings.show_ids:
        try:
            results += publish_show(ctx, show_id, now=now)
        except PipelineError as exc:
            log.error("[publish] %s: %s", show_id, exc)
            failures[show_id] = str(exc)
    if failures:
        raise PublishError(results, failures)
    return results


def shows_due(ctx: Context, now: dt.datetime | None = None) -> list[str]:
    """Shows whose published feeds no longer list what they should now (a scheduled
    episode's time has come) — cheap: database only, no feed is built."""
    now = now or dt.datetime.now(dt.UTC)
    rows = {(r["show"], r["feed"]): set(r["items"]) for r in ctx.db.feed_rows()}
    due = []
    for show in ctx.settings.shows:
        jobs = published_episodes(ctx, show.id)
        for kind in FEED_FILES:
            if (show.id, kind) not in rows:
                continue
            wanted = {j.id for j in feed_episodes(jobs, kind, show, now)}  # type: ignore[arg-type]
            if wanted != rows[(show.id, kind)]:
                due.append(show.id)
                break
    return due


def publish_due(ctx: Context, now: dt.datetime | None = None) -> list[FeedResult]:
    """Republish the shows whose scheduled episodes became due (called by `watch`)."""
    results: list[FeedResult] = []
    for show_id in shows_due(ctx, now):
        log.info("[publish] %s: a scheduled episode is due; republishing its feeds", show_id)
        results += publish_show(ctx, show_id, now=now)
    return results


def unpublish(ctx: Context, job: Job, *, delete_objects: bool = False) -> list[str]:
    """Take an episode out of its show's feeds; optionally delete its stored objects.

    The order keeps every published feed valid: first the state says `unpublished` (feeds are
    built from the state and leave such episodes out), then the show's feeds are rebuilt, and
    only then are the objects deleted — never while a feed still points at them. Returns the
    deleted keys.
    """
    db = ctx.db
    job = job.replace(status=Status.UNPUBLISHED, error=None)
    db.save(job)
    db.event(job.id, "unpublished", "taken out of the feeds")
    log.info("[unpublish] %s (%s) marked unpublished", job.id, job.title)
    try:
        publish_show(ctx, job.show)
    except PipelineError as exc:
        if delete_objects:
            raise PipelineError(f"not deleting the objects of episode {job.id}: its show's feeds "
                                f"could not be rebuilt first ({exc}), and deleting them now "
                                "would break the published feed. Fix that, run `learncast "
                                "publish`, then delete them") from exc
        raise
    if not delete_objects:
        return []
    keys = [o.key for o in job.objects.values()]
    delete_keys(ctx.storage, keys)
    db.save(job.replace(objects={}))
    # Publishing it again must upload again: forget that the upload stage ran.
    db.reset_stages(job.id, ["upload", "publish"])
    db.event(job.id, "objects-deleted", f"{len(keys)} object(s) deleted from storage")
    return keys
