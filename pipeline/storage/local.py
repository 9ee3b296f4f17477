"""The embedded default: a folder (`public/`) that `learncast serve` exposes over HTTP.

Each object is a file at `public/<key>`; its content type, Cache-Control and sha256 live in a
small sidecar `<key>.learncast-meta.json` beside it, which `serve` reads for its headers and
never serves itself.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import PipelineError
from pipeline.fsutil import TEMP_MARKER, atomic_path, atomic_write_text
from pipeline.storage.base import StoredObject, check_key
from pipeline.workspace import Workspace

log = logging.getLogger(__name__)

META_SUFFIX = ".learncast-meta.json"


def read_meta(path: Path) -> dict[str, Any]:
    """The sidecar metadata of a published file ({} when absent or unreadable)."""
    meta_path = path.with_name(path.name + META_SUFFIX)
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_internal(name: str) -> bool:
    """Metadata sidecars and half-written temp files are never objects."""
    return name.endswith(META_SUFFIX) or TEMP_MARKER in name


@dataclass
class LocalStorage:
    root: Path
    base_url: str
    name: str = "local"

    @classmethod
    def from_workspace(cls, ws: Workspace) -> LocalStorage:
        return cls(root=ws.public, base_url=ws.settings.storage.public_base_url.rstrip("/"))

    def _path(self, key: str) -> Path:
        check_key(key)
        if is_internal(key):
            raise PipelineError(f"invalid storage key {key!r}: names ending in {META_SUFFIX} "
                                f"or containing {TEMP_MARKER} are reserved")
        return self.root.joinpath(*PurePosixPath(key).parts)

    def put(self, local: Path, key: str, *, content_type: str, cache_control: str,
            sha256: str) -> StoredObject:
        dest = self._path(key)
        try:
            # Bytes first, then their metadata: a crash in between leaves a sha256 that does
            # not match the bytes, so the next publish uploads again instead of skipping.
            with atomic_path(dest) as tmp:
                shutil.copyfile(local, tmp)
            meta = {"content_type": content_type, "cache_control": cache_control,
                    "sha256": sha256}
            atomic_write_text(dest.with_name(dest.name + META_SUFFIX), json.dumps(meta))
        except OSError as exc:
            raise PipelineError(f"could not write {dest}: {exc.strerror}. Check free space and "
                                "permissions of the public folder (paths.public)") from exc
        log.debug("[storage] stored %s (%s)", key, content_type)
        return StoredObject(key, dest.stat().st_size, sha256, content_type, cache_control)

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta = read_meta(path)
        return StoredObject(key, path.stat().st_size, meta.get("sha256"),
                            meta.get("content_type"), meta.get("cache_control"))

    def url(self, key: str) -> str:
        return f"{self.base_url}/{check_key(key)}"

    def fetch(self, key: str, local: Path) -> None:
        path = self._path(key)
        if not path.is_file():
            raise PipelineError(f"{key} is not in the local storage folder {self.root}")
        try:
            with atomic_path(local) as tmp:
                shutil.copyfile(path, tmp)
        except OSError as exc:
            raise PipelineError(f"could not copy {key} to {local}: {exc.strerror}. Check free "
                                "space and permissions of the workspace") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + META_SUFFIX).unlink(missing_ok=True)
        # Drop folders the delete left empty, up to (not including) the root.
        folder = path.parent
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
