"""Turn files dropped into the inbox into episodes — carefully.

A file is taken only once it has stopped changing, claimed by an atomic rename (so two
workers never take the same file), hashed, checked for duplicates, probed, fully decoded once
(truncated files are caught here, not three stages later), and archived untouched. Anything
unusable goes to `failed/` with `<name>.error.txt` saying what was wrong and what to do.
A crash between the claim and the database leaves the file in `work/.claims/`, from where the
next run picks it up again.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import failures, media
from pipeline.artifacts import Artifact
from pipeline.errors import InputError, ToolError
from pipeline.fsutil import fit_name, sha256_file, slugify, unique_path
from pipeline.models import Job, Status
from pipeline.sidecar import SIDECAR_SUFFIXES, EpisodeMetadata, find_sidecar, load_sidecar
from pipeline.state import owner_alive, process_token
from pipeline.workspace import Context

log = logging.getLogger(__name__)

#: Names that browsers, sync tools and editors use while a file is still being written.
TEMPORARY_PATTERNS = ("*.part", "*.crdownload", "*.download", "*.tmp", "*.partial", "~$*",
                      ".~*", "*.!sync", "*.filepart")
OWNER_FILE = "owner"


@dataclass(frozen=True)
class IngestResult:
    """What happened to one dropped file; the CLI prints these as the per-file summary."""

    name: str
    outcome: str  # "new", "duplicate", "requeued", "rejected"
    job_id: str | None = None
    message: str = ""
    #: A failed episode dropped again: the runner queues it again (from the start when a new
    #: sidecar came with it). Ingest only produces jobs; it never runs or re-queues them.
    requeue: Job | None = None
    from_start: bool = False


def is_candidate(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in TEMPORARY_PATTERNS):
        return False
    if path.suffix.lower() in SIDECAR_SUFFIXES or name.endswith(".error.txt"):
        return False
    return path.is_symlink() or path.is_file()


@dataclass
class InboxScanner:
    """Remembers what each inbox file looked like, to tell finished files from growing ones."""

    inbox: Path
    settle_seconds: float
    _seen: dict[Path, tuple[int, int, float]] = field(default_factory=dict)

    def poll(self) -> tuple[list[Path], list[Path]]:
        """Return (ready, still changing). Ready: unchanged for at least `settle_seconds`."""
        now = time.monotonic()
        ready: list[Path] = []
        pending: list[Path] = []
        current: dict[Path, tuple[int, int, float]] = {}
        try:
            entries = sorted(self.inbox.iterdir())
        except FileNotFoundError:
            return [], []
        for path in entries:
            if not is_candidate(path):
                continue
            if path.is_symlink():  # rejected at once: there is nothing to wait for
                ready.append(path)
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            previous = self._seen.get(path)
            since = previous[2] if previous and previous[:2] == sig else now
            current[path] = (*sig, since)
            (ready if now - since >= self.settle_seconds and previous else pending).append(path)
        self._seen = current
        return ready, pending


def claim(ctx: Context, path: Path) -> Path | None:
    """Move `path` (and its sidecar) into a fresh claim folder; None if another worker won."""
    ws = ctx.workspace
    token = process_token()
    folder = ws.claims / f"{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    (folder / OWNER_FILE).write_text(token)
    sidecar = find_sidecar(path) if not path.is_symlink() else None
    try:
        os.rename(path, folder / path.name)
    except FileNotFoundError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    if sidecar is not None:
        with contextlib.suppress(FileNotFoundError):
            os.rename(sidecar, folder / sidecar.name)
    return folder


def orphaned_claims(ctx: Context) -> list[Path]:
    """Claim folders whose owning process died (a crash between claim and database)."""
    out = []
    if not ctx.workspace.claims.is_dir():
        return out
    for folder in sorted(ctx.workspace.claims.iterdir()):
        owner_file = folder / OWNER_FILE
        try:
            owner = owner_file.read_text()
        except OSError:
            owner = ""
        if folder.is_dir() and not owner_alive(owner):
            # take it over atomically: rewrite the owner only if we can rename the folder
            taken = folder.with_name(folder.name + "-r" + uuid.uuid4().hex[:4])
            try:
                os.rename(folder, taken)
            except FileNotFoundError:
                continue
            (taken / OWNER_FILE).write_text(process_token())
            out.append(taken)
    return out


def ingest_claim(ctx: Context, folder: Path) -> IngestResult | None:
    """Turn one claimed file into an episode (or a duplicate, or a rejection)."""
    files = [p for p in folder.iterdir() if p.name != OWNER_FILE]
    media_files = [p for p in files if is_candidate(p)]
    if not media_files:  # only a sidecar survived a crash: give it back to the inbox
        _unclaim(ctx, folder, files)
        return None
    path = media_files[0]
    sidecar = find_sidecar(path)
    try:
        result = _ingest(ctx, path, sidecar)
    except ToolError:  # ffmpeg is broken, not the file: leave it for a run with a working one
        _unclaim(ctx, folder, [p for p in folder.iterdir() if p.name != OWNER_FILE])
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _unclaim(ctx: Context, folder: Path, files: list[Path]) -> None:
    """Give claimed files back to the inbox, untouched, and drop the claim folder."""
    for p in files:
        os.rename(p, unique_path(ctx.workspace.inbox, p.name))
    shutil.rmtree(folder, ignore_errors=True)


def _ingest(ctx: Context, path: Path, sidecar: Path | None) -> IngestResult:
    ws = ctx.workspace
    db = ctx.db
    if path.is_symlink():
        target = os.readlink(path)
        return _reject(ctx, path, sidecar,
                       f"'{path.name}' is a symbolic link (to {target}), not a recording. "
                       "Copy the recording itself into the inbox")
    sha = sha256_file(path)
    existing = db.by_sha256(sha)
    if existing:
        return _duplicate(ctx, existing, path, sidecar)
    try:
        metadata = load_sidecar(sidecar)
        show = _show(ctx, metadata, sidecar)
        probe = media.probe(path)
        limits = ctx.settings.ingest
        if probe.duration_s < limits.min_duration_s:
            raise InputError(f"the recording is {probe.duration_s:.2f} s long; at least "
                             f"{limits.min_duration_s:g} s is required "
                             "(ingest.min_duration_s). Check that the export is complete")
        if probe.duration_s > limits.max_duration_s:
            raise InputError(f"the recording is {probe.duration_s / 60:.1f} min long; at most "
                             f"{limits.max_duration_s / 60:g} min is accepted "
                             "(ingest.max_duration_s). Split it, or raise the limit")
        media.check_decodes(ctx.ffmpeg, path, probe)
    except InputError as exc:
        return _reject(ctx, path, sidecar, str(exc))

    job_id = sha[:12]
    archive_dir = ws.archive / job_id
    archive_dir.mkdir(parents=True, exist_ok=True)
    original = archive_dir / path.name
    os.rename(path, original)
    if sidecar is not None:
        os.rename(sidecar, archive_dir / sidecar.name)
    title = metadata.title or _title_from_name(path.stem)
    job = Job(
        id=job_id, sha256=sha, show=show, title=title,
        slug=f"{slugify(title) or 'episode'}-{job_id[:6]}", source=path.name,
        original=ws.rel(original), probe=probe, metadata=metadata, status=Status.QUEUED,
        files={Artifact.ORIGINAL: ws.rel(original)},
        measurements={"source_duration_s": probe.duration_s},
    )
    db.insert(job)
    db.event(job_id, "ingested", f"{path.name} ({probe.kind}, {probe.duration_s:.1f} s)")
    log.info("[ingest] %s → episode %s (%s, %.1f s, show %s)", path.name, job_id, probe.kind,
             probe.duration_s, show)
    return IngestResult(path.name, "new", job_id, f"{probe.kind}, {probe.duration_s:.1f} s")


def _show(ctx: Context, metadata: EpisodeMetadata, sidecar: Path | None) -> str:
    try:
        return ctx.settings.show(metadata.show).id
    except KeyError:
        name = sidecar.name if sidecar else "sidecar"
        raise InputError(
            f"{name}: field 'show': {metadata.show!r} is not a configured show "
            f"(configured: {', '.join(ctx.settings.show_ids)}). Fix the sidecar or add the "
            "show to config/learncast.toml, then drop both files again"
        ) from None


def _title_from_name(stem: str) -> str:
    words = " ".join(stem.replace("_", " ").replace("-", " ").split())
    return (words[:1].upper() + words[1:]) if words else "Untitled episode"


def _duplicate(ctx: Context, existing: Job, path: Path, sidecar: Path | None) -> IngestResult:
    """Same content again: keep the drop (nothing is deleted), but make no new episode.

    A re-drop of a recording that failed is taken as "try again", with the new sidecar if any.
    """
    db = ctx.db
    keep = ctx.workspace.archive / existing.id / "duplicates"
    keep.mkdir(parents=True, exist_ok=True)
    os.rename(path, unique_path(keep, path.name))
    if existing.status is not Status.FAILED:
        if sidecar is not None:
            os.rename(sidecar, unique_path(keep, sidecar.name))
        msg = f"same content as episode {existing.id} ('{existing.title}'); not processed twice"
        db.event(existing.id, "duplicate", f"{path.name}: {msg}")
        log.info("[ingest] %s: %s", path.name, msg)
        return IngestResult(path.name, "duplicate", existing.id, msg)
    try:
        metadata = load_sidecar(sidecar) if sidecar else existing.metadata
        show = _show(ctx, metadata, sidecar) if sidecar else existing.show
    except InputError as exc:
        return _reject(ctx, path, sidecar, str(exc), kept=ctx.workspace.rel(keep))
    if sidecar is not None:
        os.rename(sidecar, ctx.workspace.archive / existing.id / sidecar.name)
    job = existing.replace(metadata=metadata, show=show,
                           title=metadata.title or existing.title)
    msg = f"dropped again after failing; episode {existing.id} re-queued"
    return IngestResult(path.name, "requeued", existing.id, msg, requeue=job,
                        from_start=sidecar is not None)


def _reject(ctx: Context, path: Path, sidecar: Path | None, reason: str, *,
            kept: str | None = None) -> IngestResult:
    """Move the drop (and its sidecar) to `failed/` with a note; it is not an episode.

    `kept`: the recording itself is already kept there (a re-drop's copy in the archive), so
    only the sidecar that made it fail moves."""
    failed = ctx.workspace.failed
    failed.mkdir(parents=True, exist_ok=True)
    dest = failed / fit_name(path.name, reserve=len(failures.NOTE_SUFFIX))
    dest = unique_path(failed, dest.name)
    if kept is None:
        os.rename(path, dest)
    sidecar_dest = None
    if sidecar is not None:
        sidecar_dest = unique_path(failed, fit_name(Path(dest.name).stem + sidecar.suffix))
        os.rename(sidecar, sidecar_dest)
    failures.reject(ctx.workspace, dest, reason, kept=kept, sidecar=sidecar_dest)
    log.warning("[ingest] %s rejected: %s", path.name, reason)
    return IngestResult(path.name, "rejected", None, reason)
