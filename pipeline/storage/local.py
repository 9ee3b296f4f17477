"""The embedded default: a folder (`public/`) that `learncast serve` exposes over HTTP."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path, atomic_write_text
from pipeline.storage.base import StoredObject
from pipeline.workspace import Workspace

META_SUFFIX = ".learncast-meta.json"


@dataclass
class LocalStorage:
    root: Path
    base_url: str
    name: str = "local"

    @classmethod
    def from_workspace(cls, ws: Workspace) -> LocalStorage:
        return cls(root=ws.public, base_url=ws.settings.storage.public_base_url.rstrip("/"))

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("..", ".", "") for p in parts):
            raise PipelineError(f"invalid storage key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, local: Path, key: str, *, content_type: str, cache_control: str,
            sha256: str) -> StoredObject:
        dest = self._path(key)
        try:
            with atomic_path(dest) as tmp:
                shutil.copyfile(local, tmp)
            meta = {"content_type": content_type, "cache_control": cache_control,
                    "sha256": sha256}
            atomic_write_text(dest.with_name(dest.name + META_SUFFIX), json.dumps(meta))
        except OSError as exc:
            raise PipelineError(f"could not write {dest}: {exc.strerror}. Check free space and "
                                "permissions of the public folder (paths.public)") from exc
        return StoredObject(key, dest.stat().st_size, sha256, content_type)

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta_path = path.with_name(path.name + META_SUFFIX)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return StoredObject(key, path.stat().st_size, meta.get("sha256"),
                            meta.get("content_type"))

    def url(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + META_SUFFIX).unlink(missing_ok=True)
