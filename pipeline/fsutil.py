"""Atomic file writes and content hashing.

Every file at a final path is either absent or complete: writers produce `<name>.learncast-tmp-*`
in the destination folder and `os.replace` it into place, so a crash never leaves a truncated
MP3, caption file or feed where a player or uploader could pick it up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

TEMP_MARKER = ".learncast-tmp-"


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it replaces `final` atomically.

    The temporary name keeps the final suffix so tools that pick formats by extension (ffmpeg)
    behave the same as on the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{final.stem}{TEMP_MARKER}", suffix=final.suffix, dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: Path, text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


def remove_temp_files(folder: Path) -> int:
    """Delete leftovers of writes interrupted by a crash; returns how many were removed."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.rglob(f"*{TEMP_MARKER}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def slugify(text: str, max_length: int = 60) -> str:
    """ASCII-only, lowercase, dash-separated: safe in file names, object keys and URLs.

    Apple rejects non-ASCII enclosure URLs, so accents are folded and anything else dropped.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def unique_path(folder: Path, name: str) -> Path:
    """A path in `folder` for `name` that does not exist yet (`name (2).ext` and so on)."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{stem} ({n}){suffix}"
        n += 1
    return candidate
