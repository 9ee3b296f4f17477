"""The storage interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None
    content_type: str | None = None


class StorageBackend(Protocol):
    """Put files under ASCII keys and say where learners can fetch them.

    `put` must be atomic from a reader's point of view: an object is either the old bytes or
    the complete new ones, never a partial upload.
    """

    name: str

    def put(self, local: Path, key: str, *, content_type: str, cache_control: str,
            sha256: str) -> StoredObject: ...

    def stat(self, key: str) -> StoredObject | None: ...

    def url(self, key: str) -> str: ...

    def delete(self, key: str) -> None: ...
