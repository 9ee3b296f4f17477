"""Publishing storage: one small interface, a plain registry of backends.

Backends are built once per process (`open_storage`) and kept in `ctx.resources["storage"]`
by the stages that use them, so the boto3 client and its connection pool are shared.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.storage.base import StorageBackend, StoredObject, check_key, content_type_for
from pipeline.storage.local import LocalStorage
from pipeline.storage.s3 import S3Storage
from pipeline.workspace import Workspace

BACKENDS: dict[str, Callable[[Workspace], StorageBackend]] = {
    "local": LocalStorage.from_workspace,
    "s3": S3Storage.from_workspace,
}


def open_storage(ws: Workspace) -> StorageBackend:
    return BACKENDS[ws.settings.storage.backend](ws)


__all__ = ["BACKENDS", "StorageBackend", "StoredObject", "check_key", "content_type_for",
           "open_storage"]
