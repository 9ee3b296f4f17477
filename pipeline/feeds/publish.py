"""Rebuild a show's feeds from the state database, validate them, and publish them last.

Used by the "publish" stage (after an episode's media are uploaded), by `learncast publish`
(every show) and by `learncast watch` (when a scheduled episode's time has come). The order
is what keeps learners' apps from ever seeing a broken item: artwork and media are in storage
before the feed that points at them; every feed of a show is validated before any is uploaded;
a feed whose bytes did not change is not uploaded again.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.config import ShowSettings
from pipeline.errors import ConfigError, PipelineError
from pipeline.feeds.build import FEED_FILES, FeedKind, FeedSpec, build_feed, feed_episodes
from pipeline.feeds.guid import podcast_guid
from pipeline.feeds.validate import FeedValidationError, check_artwork, validate_feed
from pipeline.fsutil import atomic_write_bytes, sha256_file
from pipeline.models import Job, Status
from pipeline.state import StateDB
from pipeline.storage import StorageBackend
from pipeline.storage.publish import PublishItem, publish_files, storage_for
from pipeline.workspace import Context

log = logging.getLogger(__name__)

FEED_CONTENT_TYPE = "application/rss+xml; charset=utf-8"
#: Apps poll feeds; a short cache keeps a new episode from hiding behind a CDN for long.
FEED_CACHE_CONTROL = "public, max-age=300"
ARTWORK_CACHE_CONTROL = "public, max-age=31536000, immutable"


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
    folder = f"{show.id}-{token}" if show.feed_token and token else show.id
    return f"feeds/{folder}/{FEED_FILES[kind]}"


def published_episodes(db: StateDB, show: str, include: Job | None = None) -> list[Job]:
    """Episodes that belong in the show's feeds: published ones, plus `include` (the episode
    being published right now, whose status is not `published` yet)."""
    jobs = [j for j in db.all(show=show) if j.status is Status.PUBLISHED
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
    key = f"shows/{show.id}/artwork-{sha[:16]}{ext}"
    return (PublishItem(path, key, ARTWORK_CACHE_CONTROL, content_type=mime, sha256=sha),
            storage.url(key), path)


def publish_show(ctx: Context, db: StateDB, show_id: str, *, include: Job | None = None,
                 now: dt.datetime | None = None) -> list[FeedResult]:
    """Rebuild and validate every feed of one show, then store artwork and (changed) feeds.

    Nothing is stored unless every feed is valid, and the artwork is confirmed in storage
    before any feed is put. (The publish stage has confirmed the objects of `include`, the
    episode being published now.)
    """
    try:
        show = ctx.settings.show(show_id)
    except KeyError:
        raise ConfigError(f"show {show_id!r} is not configured (configured: "
                          f"{', '.join(ctx.settings.show_ids)}); add a [[shows]] entry for it "
                          "in config/learncast.toml") from None
    now = now or dt.datetime.now(dt.UTC)
    storage = storage_for(ctx)
    jobs = published_episodes(db, show.id, include)
    known = {row["feed"] for row in db.feed_rows(show.id)}
    kinds: list[FeedKind] = ["audio"]
    if "video" in known or any("video" in j.objects for j in jobs):
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
        lengths = {j.objects[kind]["url"]: int(j.objects[kind]["size"]) for j in episodes}
        found = validate_feed(xml, artwork=artwork_path, expected_lengths=lengths)
        problems += [f"{FEED_FILES[kind]}: {p}" for p in found]
        built.append((kind, key, xml, episodes))
    if problems:
        raise FeedValidationError(f"of show {show.id}", problems)

    feeds = []
    for kind, key, xml, _ in built:
        local = ctx.workspace.feeds / show.id / FEED_FILES[kind]
        if not local.is_file() or local.read_bytes() != xml:
            atomic_write_bytes(local, xml)
        feeds.append(PublishItem(local, key, FEED_CACHE_CONTROL, content_type=FEED_CONTENT_TYPE,
                                 sha256=sha256_file(local)))
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


def publish_all(ctx: Context, db: StateDB, *, shows: Iterable[str] | None = None,
                now: dt.datetime | None = None) -> list[FeedResult]:
    """`learncast publish`: every (or the chosen) show's feeds, rebuilt and republished.

    A show that fails (invalid feed, storage error) does not keep the others from being
    published; PublishError lists the failures and carries what did get published."""
    results: list[FeedResult] = []
    failures: dict[str, str] = {}
    for show_id in shows or ctx.settings.show_ids:
        try:
            results += publish_show(ctx, db, show_id, now=now)
        except PipelineError as exc:
            log.error("[publish] %s: %s", show_id, exc)
            failures[show_id] = str(exc)
    if failures:
        raise PublishError(results, failures)
    return results


def shows_due(ctx: Context, db: StateDB, now: dt.datetime | None = None) -> list[str]:
    """Shows whose published feeds no longer list what they should now (a scheduled
    episode's time has come) — cheap: database only, no feed is built."""
    now = now or dt.datetime.now(dt.UTC)
    rows = {(r["show"], r["feed"]): set(r["items"]) for r in db.feed_rows()}
    due = []
    for show in ctx.settings.shows:
        jobs = published_episodes(db, show.id)
        for kind in FEED_FILES:
            if (show.id, kind) not in rows:
                continue
            wanted = {j.id for j in feed_episodes(jobs, kind, show, now)}  # type: ignore[arg-type]
            if wanted != rows[(show.id, kind)]:
                due.append(show.id)
                break
    return due


def publish_due(ctx: Context, db: StateDB, now: dt.datetime | None = None) -> list[FeedResult]:
    """Republish the shows whose scheduled episodes became due (called by `watch`)."""
    results: list[FeedResult] = []
    for show_id in shows_due(ctx, db, now):
        log.info("[publish] %s: a scheduled episode is due; republishing its feeds", show_id)
        results += publish_show(ctx, db, show_id, now=now)
    return results
