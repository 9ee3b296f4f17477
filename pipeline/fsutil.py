"""Atomic file writes and content hashing.

Every file at a final path is either absent or complete: writers produce `<name>.learncast-tmp-*`
in the destination folder and `os.replace` it into place, so a crash never leaves a truncated
MP3, caption file or feed where a player or uploader could pick it up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from pipeline import crashpoints

TEMP_MARKER = ".learncast-tmp-"

#: Longest file name most filesystems take (bytes).
NAME_MAX = 255
#: Room a temporary name needs beyond its final name: marker, pid, mkstemp's random part.
_TEMP_EXTRA = len(TEMP_MARKER) + 20


def fit_name(name: str, *, reserve: int = 0) -> str:
    """`name` shortened (its stem, keeping the suffix) so that `reserve` more bytes and a
    temporary-file infix still fit in NAME_MAX: a 250-byte recording name must still get its
    `.error.txt` note. Shortened names end in a short hash of the full one, so two long names
    that share a beginning stay distinct."""
    limit = NAME_MAX - _TEMP_EXTRA - reserve
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    tag = "~" + hashlib.sha256(encoded).hexdigest()[:8]
    room = limit - len(suffix.encode("utf-8", "surrogateescape")) - len(tag)
    stem = encoded[:max(room, 1)].decode("utf-8", "ignore")
    return stem + tag + suffix


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it replaces `final` atomically.

    The temporary name keeps the final suffix so tools that pick formats by extension (ffmpeg)
    behave the same as on the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later process tell a crashed write's debris from
    # a write still in progress in another live process (see remove_stale_temp_files).
    stem = fit_name(final.stem, reserve=len(final.suffix))
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{stem}{TEMP_MARKER}{os.getpid()}-", suffix=final.suffix, dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        crashpoints.reached(f"replace:{final.name}", str(tmp))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: Path, text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


_TEMP_PID = re.compile(re.escape(TEMP_MARKER) + r"(\d+)-")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folders: list[Path]) -> int:
    """Delete temp files left by writers that no longer run (a `kill -9`, a power cut, a
    failed attempt of a stage).

    Temp files of a live process (another `learncast watch`, a worker thread of this one) are
    kept: removing one would break that writer's rename. Returns how many were removed.
    """
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.rglob(f"*{TEMP_MARKER}*"):
            match = _TEMP_PID.search(path.name)
            if match and pid_alive(int(match.group(1))):
                continue
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
    """A path in `folder` for `name` that does not exist yet (`name (2).ext` and so on;
    shortened when the number would make a long name too long for the filesystem)."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while candidate.exists() or candidate.is_symlink():
        numbered = f"{stem} ({n}){suffix}"
        if len(numbered.encode("utf-8", "surrogateescape")) > NAME_MAX:
            numbered = fit_name(numbered)
        candidate = folder / numbered
        n += 1
    return candidate


def display_name(name: str) -> str:
    """`name` as text that can be shown, stored and written as UTF-8.

    A file name that is not valid UTF-8 arrives from the OS with its bad bytes as lone
    surrogates, which SQLite, JSON files and terminals refuse; they are shown as `\\xNN`
    escapes instead (the file itself keeps its name)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def being_written(path: Path) -> bool:
    """Whether another process holds `path` open for writing (a copy that paused, not
    finished), so its size and mtime standing still mean nothing.

    Linux refuses a read lease on a file open for writing anywhere on the machine; where
    leases are unavailable (other systems, network filesystems, files of other users) the
    answer is False and the settle time alone decides.
    """
    set_lease = getattr(fcntl, "F_SETLEASE", None)
    if set_lease is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, set_lease, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EBUSY)
    else:
        fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)
