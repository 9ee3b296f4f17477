"""Publishing on top of any backend: skip what is already stored, feeds strictly last.

A podcast app that fetches a feed must find every enclosure, transcript and chapters file the
feed points at. So `publish_files` stores (or confirms) everything else first, checks that each
object is there with the expected sha256, and only then puts the feeds. If anything fails on
the way, it raises before the first feed is touched: the previously published feed stays as it
was and keeps pointing at objects that still exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError, RetryableError
from pipeline.fsutil import sha256_file
from pipeline.models import Job, Status
from pipeline.state import StateDB
from pipeline.storage import open_storage
from pipeline.storage.base import (
    StorageBackend,
    StoredObject,
    content_type_for,
    http_content_type,
)
from pipeline.workspace import Context

log = logging.getLogger(__name__)


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

    `referenced` maps keys uploaded earlier (by the upload stage; `job.objects[*]["key"]` →
    `["sha256"]`) that the feeds point at; they are checked, not uploaded. Any error is raised
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


def storage_for(ctx: Context) -> StorageBackend:
    """The process's one backend (and boto3 client), created on first use."""
    backend = ctx.resources.get("storage")
    if backend is None:
        backend = ctx.resources["storage"] = open_storage(ctx.workspace)
    return backend


def unpublish(ctx: Context, db: StateDB, job: Job, *, delete_objects: bool = False,
              rebuild_feeds: Callable[[str], None] | None = None) -> list[str]:
    """Take an episode out of its show's feeds; optionally delete its stored objects.

    The order keeps every published feed valid: first the state says `unpublished` (feeds are
    built from the state and leave such episodes out), then the show's feeds are rebuilt by
    `rebuild_feeds(show)`, and only then are the objects deleted — never while a feed still
    points at them. Returns the deleted keys.
    """
    if delete_objects and rebuild_feeds is None:
        raise PipelineError(f"not deleting the objects of episode {job.id}: its show's feeds "
                            "could not be rebuilt first, and deleting them now would break the "
                            "published feed. Run `learncast publish`, then delete them")
    job = job.replace(status=Status.UNPUBLISHED, error=None)
    db.save(job)
    db.event(job.id, "unpublished", "taken out of the feeds")
    log.info("[unpublish] %s (%s) marked unpublished", job.id, job.title)
    if rebuild_feeds is not None:
        rebuild_feeds(job.show)
    if not delete_objects:
        return []
    keys = [str(o["key"]) for o in job.objects.values() if o.get("key")]
    delete_keys(storage_for(ctx), keys)
    db.save(job.replace(objects={}))
    # Publishing it again must upload again: forget that the upload stage ran.
    db.reset_stages(job.id, ["upload", "publish"])
    db.event(job.id, "objects-deleted", f"{len(keys)} object(s) deleted from storage")
    return keys
