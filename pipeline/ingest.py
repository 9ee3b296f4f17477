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
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import failures, media, notify
from pipeline.artifacts import Artifact
from pipeline.errors import InputError, PipelineError, ToolError
from pipeline.fsutil import (
    being_written,
    display_name,
    fit_name,
    sha256_file,
    slugify,
    unique_path,
)
from pipeline.models import Job, Status
from pipeline.sidecar import SIDECAR_SUFFIXES, Check, find_sidecar, load_sidecar
from pipeline.state import check_storable, owner_alive, process_token
from pipeline.workspace import Context

log = logging.getLogger(__name__)

#: Names that browsers, sync tools and editors use while a file is still being written.
TEMPORARY_PATTERNS = ("*.part", "*.crdownload", "*.download", "*.tmp", "*.partial", "~$*",
                      ".~*", "*.!sync", "*.filepart")
OWNER_FILE = "owner"
#: How often ingest of one claimed file was started; a file whose ingest killed the process
#: (out of memory, say) is quarantined on the next try instead of killing every later run.
ATTEMPTS_FILE = ".attempts"
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class IngestResult:
    """What happened to one dropped file; the CLI prints these as the per-file summary."""

    name: str  # as it can be shown (display_name)
    outcome: str  # "new", "duplicate", "requeued", "rejected", "pending"
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
            settled = now - since >= self.settle_seconds and previous is not None
            if settled and being_written(path):  # a copy that paused: it is not finished
                settled, since = False, now
            current[path] = (*sig, since)
            (ready if settled else pending).append(path)
        self._seen = current
        return ready, pending


def claim(ctx: Context, path: Path) -> Path | None:
    """Move `path` (and its sidecar) into a fresh claim folder; None if another worker won
    (or the file could not be claimed, in which case it is quarantined)."""
    try:
        return _claim(ctx, path)
    except Exception as exc:  # a bug: keep this file from stopping every later run
        log.error("[ingest] %s: unexpected error while claiming it\n%s",
                  display_name(path.name), traceback.format_exc())
        _quarantine(ctx, [path], exc)
        return None


def _claim(ctx: Context, path: Path) -> Path | None:
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
    """Turn one claimed file into an episode (or a duplicate, or a rejection).

    Whatever goes wrong with this one file stays with it: an unexpected error quarantines
    the file in `failed/` (a claim folder left behind would be taken up, and crash, on every
    later run), and a file whose ingest was started MAX_ATTEMPTS times without finishing (the
    process was killed, say for lack of memory) is quarantined without another try.
    """
    files = [p for p in folder.iterdir() if p.name not in (OWNER_FILE, ATTEMPTS_FILE)]
    media_files = [p for p in files if is_candidate(p)]
    if not media_files:  # only a sidecar survived a crash: give it back to the inbox
        _unclaim(ctx, folder, files)
        return None
    path = media_files[0]
    try:
        attempts = _count_attempt(folder)
        sidecar = find_sidecar(path)
        if attempts > MAX_ATTEMPTS:
            result = _reject(ctx, path, sidecar, (
                f"Learncast stopped {attempts - 1} times while taking this file in (the "
                "process was killed, perhaps for lack of memory, or crashed), so it is not "
                "tried again. Check the file (is it what you meant to drop?) and the log"))
        else:
            result = _ingest(ctx, path, sidecar)
    except ToolError:  # ffmpeg is broken, not the file: leave it for a run with a working one
        _unclaim(ctx, folder, [p for p in folder.iterdir()
                               if p.name not in (OWNER_FILE, ATTEMPTS_FILE)])
        raise
    except Exception as exc:  # a bug: this file is quarantined, the others go on
        log.error("[ingest] %s: unexpected error\n%s", display_name(path.name),
                  traceback.format_exc())
        result = _quarantine(ctx, [p for p in media_files if p.exists()], exc)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _unclaim(ctx: Context, folder: Path, files: list[Path]) -> None:
    """Give claimed files back to the inbox, untouched, and drop the claim folder."""
    for p in files:
        os.rename(p, unique_path(ctx.workspace.inbox, p.name))
    shutil.rmtree(folder, ignore_errors=True)


def _count_attempt(folder: Path) -> int:
    marker = folder / ATTEMPTS_FILE
    try:
        attempts = int(marker.read_text() or 0) + 1
    except (OSError, ValueError):
        attempts = 1
    marker.write_text(str(attempts))
    return attempts


def _quarantine(ctx: Context, paths: list[Path], exc: BaseException) -> IngestResult | None:
    """Move files that made ingest fail unexpectedly to `failed/`, each with a note."""
    reason = (f"Learncast failed while taking it in ({type(exc).__name__}: "
              f"{display_name(str(exc))[:300]}). This is a Learncast bug; please report it "
              "with the log. The file was not changed")
    result = None
    for path in paths:
        try:
            result = _reject(ctx, path, find_sidecar(path), reason)
        except Exception:  # even the note failed: at least move the file out of the way
            log.error("[ingest] %s could not be quarantined with a note\n%s",
                      display_name(path.name), traceback.format_exc())
            with contextlib.suppress(OSError):
                ctx.workspace.failed.mkdir(parents=True, exist_ok=True)
                os.rename(path, unique_path(ctx.workspace.failed, fit_name(path.name)))
            result = IngestResult(display_name(path.name), "rejected", None, reason)
    return result


def _ingest(ctx: Context, path: Path, sidecar: Path | None) -> IngestResult:
    ws = ctx.workspace
    db = ctx.db
    name = display_name(path.name)
    if path.is_symlink():
        target = display_name(os.readlink(path))
        return _reject(ctx, path, sidecar,
                       f"'{name}' is a symbolic link (to {target}), not a recording. "
                       "Copy the recording itself into the inbox")
    before = _signature(path)
    sha = sha256_file(path)
    existing = db.by_sha256(sha)
    if existing:
        return _duplicate(ctx, existing, path, sidecar)
    job_id = sha[:12]
    archive_dir = ws.archive / job_id
    original = archive_dir / _archived_name(path.name)
    try:
        metadata = load_sidecar(sidecar, check=_sidecar_check(ctx))
        show = ctx.settings.show(metadata.show).id
        limits = ctx.settings.ingest
        probe = media.probe(path, limits=media.PictureLimits(
            limits.max_video_width, limits.max_video_height, limits.max_video_pixels))
        if probe.duration_s < limits.min_duration_s:
            raise InputError(f"the recording is {probe.duration_s:.2f} s long; at least "
                             f"{limits.min_duration_s:g} s is required "
                             "(ingest.min_duration_s). Check that the export is complete")
        if probe.duration_s > limits.max_duration_s:
            raise InputError(f"the recording is {probe.duration_s / 60:.1f} min long; at most "
                             f"{limits.max_duration_s / 60:g} min is accepted "
                             "(ingest.max_duration_s). Split it, or raise the limit")
        media.check_decodes(ctx.ffmpeg, path, probe)
        title = metadata.title or _title_from_name(path.stem)
        job = Job(
            id=job_id, sha256=sha, show=show, title=title,
            slug=f"{slugify(title) or 'episode'}-{job_id[:6]}", source=name,
            original=ws.rel(original), probe=probe, metadata=metadata, status=Status.QUEUED,
            files={Artifact.ORIGINAL: ws.rel(original)},
            measurements={"source_duration_s": probe.duration_s},
        )
    except InputError as exc:
        return _reject(ctx, path, sidecar, str(exc))
    try:
        check_storable(job)
    except PipelineError as exc:  # a job that would not read back is never stored
        return _reject(ctx, path, sidecar, str(exc))
    if _signature(path) != before:
        return _put_back(ctx, path, sidecar, path)
    archive_dir.mkdir(parents=True, exist_ok=True)
    os.rename(path, original)
    # A copy that paused and resumed after we looked writes into the file we just moved:
    # what is archived must still be exactly what was hashed and checked.
    if _signature(original) != before or sha256_file(original) != sha:
        return _put_back(ctx, original, sidecar, path)
    archived_sidecar = archive_dir / _archived_name(sidecar.name) if sidecar else None
    if sidecar is not None and archived_sidecar is not None:
        os.rename(sidecar, archived_sidecar)
    try:
        db.insert(job)
    except BaseException:  # not an episode after all: the files go back to the claim
        os.rename(original, path)
        if sidecar is not None and archived_sidecar is not None:
            os.rename(archived_sidecar, sidecar)
        raise
    db.event(job_id, "ingested", f"{name} ({probe.kind}, {probe.duration_s:.1f} s)")
    log.info("[ingest] %s → episode %s (%s, %.1f s, show %s)", name, job_id, probe.kind,
             probe.duration_s, show)
    return IngestResult(name, "new", job_id, f"{probe.kind}, {probe.duration_s:.1f} s")


def _signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _archived_name(name: str) -> str:
    """The name a file is archived under: its own, or for a name that is not valid UTF-8 the
    escaped form the state database stores (the content is kept byte for byte)."""
    shown = display_name(name)
    return name if shown == name else fit_name(shown)


def _put_back(ctx: Context, path: Path, sidecar: Path | None, dropped: Path) -> IngestResult:
    """The file changed while it was being taken in: it is still being written. Back to the
    inbox it goes, to be taken once it has settled."""
    name = display_name(dropped.name)
    os.rename(path, unique_path(ctx.workspace.inbox, dropped.name))
    if sidecar is not None:
        with contextlib.suppress(FileNotFoundError):
            os.rename(sidecar, unique_path(ctx.workspace.inbox, sidecar.name))
    log.warning("[ingest] %s changed while it was being taken in; left in the inbox until "
                "it is complete", name)
    return IngestResult(name, "pending", None,
                        "still being written (it changed while it was taken in); left in the "
                        "inbox for the next run")


def _sidecar_check(ctx: Context) -> Check:
    """Sidecar checks that need the configuration, reported with the sidecar's other
    problems: the show exists, and a serial show's episodes carry an episode number (the
    feed refuses them otherwise, after the media was uploaded)."""
    settings = ctx.settings

    def check(data: dict[str, Any]) -> list[str]:
        wanted = data.get("show")
        if wanted is not None and not isinstance(wanted, str):
            return []  # the field check says so
        try:
            show = settings.show(wanted)
        except KeyError:
            return [f"field 'show': {wanted!r} is not a configured show; allowed: "
                    f"{', '.join(settings.show_ids)} (or add the show to "
                    "config/learncast.toml)"]
        if show.type == "serial" and data.get("episode") is None:
            return [f"field 'episode' is missing; show '{show.id}' is serial, so every "
                    "episode needs its number (episode: N)"]
        return []

    return check


def _title_from_name(stem: str) -> str:
    stem = stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    words = " ".join(stem.replace("_", " ").replace("-", " ").split())
    return (words[:1].upper() + words[1:]) if words else "Untitled episode"


def _duplicate(ctx: Context, existing: Job, path: Path, sidecar: Path | None) -> IngestResult:
    """Same content again: keep the drop (nothing is deleted), but make no new episode.

    A re-drop of a recording that failed is taken as "try again", with the new sidecar if any.
    """
    db = ctx.db
    name = display_name(path.name)
    keep = ctx.workspace.archive / existing.id / "duplicates"
    keep.mkdir(parents=True, exist_ok=True)
    os.rename(path, unique_path(keep, path.name))
    if existing.status is not Status.FAILED:
        if sidecar is not None:
            os.rename(sidecar, unique_path(keep, sidecar.name))
        msg = f"same content as episode {existing.id} ('{existing.title}'); not processed twice"
        db.event(existing.id, "duplicate", f"{name}: {msg}")
        log.info("[ingest] %s: %s", name, msg)
        return IngestResult(name, "duplicate", existing.id, msg)
    try:
        metadata = (load_sidecar(sidecar, check=_sidecar_check(ctx)) if sidecar
                    else existing.metadata)
        show = ctx.settings.show(metadata.show).id if sidecar else existing.show
    except InputError as exc:
        return _reject(ctx, path, sidecar, str(exc), kept=ctx.workspace.rel(keep))
    if sidecar is not None:
        os.rename(sidecar, ctx.workspace.archive / existing.id / _archived_name(sidecar.name))
    job = existing.replace(metadata=metadata, show=show,
                           title=metadata.title or existing.title)
    msg = f"dropped again after failing; episode {existing.id} re-queued"
    return IngestResult(name, "requeued", existing.id, msg, requeue=job,
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
    name = display_name(path.name)
    notify.event(ctx, "rejected", name=name, reason=reason, sidecar=sidecar_dest,  # one drop,
                 note=ctx.workspace.rel(dest), key=f"rejected:{uuid.uuid4().hex}")  # one event
    log.warning("[ingest] %s rejected: %s", name, reason)
    return IngestResult(name, "rejected", None, reason)


def check_original(ctx: Context, job: Job) -> None:
    """Refuse to go on when the archived original is no longer what was taken in.

    A copy into the inbox that paused (longer than the settle time, with its file closed)
    and resumed after ingest writes into the archived file: every later stage would work on
    a recording other than the one hashed and checked, and publish it cut short. The runner
    calls this before each stage; a size check is enough to catch a copy that went on.
    """
    stored = job.files.get(Artifact.ORIGINAL)
    if stored is None or job.probe is None:
        return
    try:
        size = ctx.workspace.abs(stored).stat().st_size
    except FileNotFoundError:
        return  # the runner's input check says what to do about a missing original
    if size != job.probe.size_bytes:
        raise PipelineError(
            f"the archived original {stored} changed since it was taken in "
            f"({job.probe.size_bytes} bytes then, {size} now): a copy into the inbox was "
            "probably still going on. Nothing was published from it. Drop the complete "
            "recording into the inbox again (it becomes a new episode)")
