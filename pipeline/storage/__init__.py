"""Publishing storage: one small interface, a plain registry of backends."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.storage.base import StorageBackend, StoredObject
from pipeline.storage.local import LocalStorage
from pipeline.workspace import Workspace

BACKENDS: dict[str, Callable[[Workspace], StorageBackend]] = {
    "local": LocalStorage.from_workspace,
}


def open_storage(ws: Workspace) -> StorageBackend:
    return BACKENDS[ws.settings.storage.backend](ws)


__all__ = ["BACKENDS", "StorageBackend", "StoredObject", "open_storage"]
