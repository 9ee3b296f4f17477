"""The storage interface every backend implements, and what all backends share.

A backend only moves bytes: `put` a local file under a key, `stat` a key, give its public
`url`, `delete` it. Everything above that (skip-unchanged, publish order, feeds last) lives in
`pipeline.storage.publish`, so it is written once and holds for every backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from pipeline.errors import PipelineError

#: Keys are plain ASCII path segments: Apple rejects non-ASCII enclosure URLs, and keys that
#: need no percent-encoding look the same in the feed, the bucket and the access log.
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9][A-Za-z0-9._~-]*)*$")

#: Every key of a private show starts with this: one rule keeps its objects out of a
#: bucket's public reads (and out of any ACL), and `learncast serve` gives them only to a
#: learner's valid token.
PRIVATE_PREFIX = "private/"

#: Content types by file suffix (the longest matching suffix wins).
CONTENT_TYPES: dict[str, str] = {
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".txt": "text/plain",
    ".html": "text/html",
    ".json": "application/json",
    ".chapters.json": "application/json+chapters",
    ".xml": "application/rss+xml",
    ".rss": "application/rss+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


def content_type_for(name: str) -> str:
    """The content type podcast apps and players expect for a file or key name."""
    lower = name.lower()
    for suffix in sorted(CONTENT_TYPES, key=len, reverse=True):
        if lower.endswith(suffix):
            return CONTENT_TYPES[suffix]
    return "application/octet-stream"


def http_content_type(media_type: str) -> str:
    """The Content-Type header for a media type: text is always sent as UTF-8.

    Feeds name the bare media type (`type="text/vtt"`); the HTTP header also says the charset,
    so browsers do not show accented names in a transcript as mojibake.
    """
    if media_type.startswith("text/") and "charset" not in media_type:
        return f"{media_type}; charset=utf-8"
    return media_type


def check_key(key: str) -> str:
    """Refuse keys that are not plain ASCII segments (no `..`, no leading `/`, no spaces)."""
    if not KEY_RE.match(key) or any(p in ("..", ".") for p in PurePosixPath(key).parts):
        raise PipelineError(f"invalid storage key {key!r}: keys must be ASCII letters, digits "
                            "and ._~- in /-separated segments. This is a Learncast bug if the "
                            "key came from an episode; please report it")
    return key


@dataclass(frozen=True)
class StoredObject:
    """What a backend holds under a key. `sha256` is None for objects we did not upload."""

    key: str
    size: int
    sha256: str | None
    content_type: str | None = None
    cache_control: str | None = None


class StorageBackend(Protocol):
    """Put files under ASCII keys and say where learners can fetch them.

    `put` must be atomic from a reader's point of view: an object is either the old bytes or
    the complete new ones, never a partial upload. Errors are `RetryableError` when trying again
    later can help (timeouts, 5xx, throttling) and `PipelineError` naming the setting to check
    otherwise.
    """

    name: str

    def put(self, local: Path, key: str, *, content_type: str, cache_control: str,
            sha256: str) -> StoredObject: ...

    def stat(self, key: str) -> StoredObject | None: ...

    def url(self, key: str) -> str: ...

    def delete(self, key: str) -> None: ...

    def fetch(self, key: str, local: Path) -> None:
        """Download `key` to `local` (atomically). Distributed workers read their working
        copies this way; publishing never needs it."""
        ...
