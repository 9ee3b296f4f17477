"""Failure notes: the one place that tells a producer, in `failed/`, what went wrong.

Two kinds of failure end up there. A file rejected at the door (not media, a bad sidecar, too
short) never becomes an episode: the file itself moves to `failed/` with its note, and the
next step is to fix it and drop it again. An episode that fails in a later stage keeps its
original in `archive/`; `failed/` gets a *copy* (a producer who fixes the file in place must
not edit the archived original) and the note, whose next step is `learncast retry`. Notes of
different episodes never overwrite each other, and a successful retry removes its own.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.fsutil import atomic_write_text, display_name, fit_name
from pipeline.models import Job
from pipeline.workspace import Workspace

NOTE_SUFFIX = ".error.txt"
_DOOR = "Learncast could not accept"
_SIDECAR = "Its sidecar:"


def note_for(path: Path) -> Path:
    """The note beside a file in `failed/`."""
    return path.with_name(fit_name(path.name + NOTE_SUFFIX))


def note_text(name: str, reason: str, *, job: Job | None = None, stage: str | None = None,
              kept: str | None = None, sidecar: str | None = None) -> str:
    if job is None:
        where = (f"The recording is kept unchanged in {kept}, its sidecar beside this note"
                 if kept else "The file is kept unchanged beside this note")
        return (f"{_DOOR} '{name}'; it did not become an episode.\n\n"
                f"What was wrong:\n  {reason}\n\n"
                + (f"{_SIDECAR} {display_name(sidecar)}\n\n" if sidecar else "") +
                f"{where}. Fix the problem, then drop the "
                "recording (and its sidecar) into the inbox again. Remove this note and the "
                "file when you no longer need them (`learncast failed --clear`).\n")
    return (f"Learncast could not finish '{name}' (episode {job.id}).\n\n"
            f"Stage: {stage}\nWhat was wrong:\n  {reason}\n\n"
            f"The original is kept unchanged in {job.original}; beside this note is a copy "
            f"you may fix or replace. Fix the cause, then run\n  learncast retry {job.id}\n")


def reject(ws: Workspace, rejected: Path, reason: str, *, kept: str | None = None,
           sidecar: Path | None = None) -> Path:
    """Write the note of a file moved into `failed/` at the door (or, `kept`, kept there)."""
    note = note_for(rejected)
    atomic_write_text(note, note_text(display_name(rejected.name), reason, kept=kept,
                                      sidecar=sidecar.name if sidecar else None))
    return note


def _episode_paths(ws: Workspace, job: Job) -> tuple[Path, Path]:
    """Where an episode's copy and note go: `failed/<source>`, unless another episode's
    failure of a file with the same name is there, then `failed/<stem> (<id>)<suffix>`."""
    plain = ws.failed / fit_name(job.source, reserve=len(NOTE_SUFFIX))
    note = note_for(plain)
    if not note.exists() or _belongs(note, job):
        return plain, note
    source = Path(job.source)
    own = ws.failed / fit_name(f"{source.stem} ({job.id}){source.suffix}",
                               reserve=len(NOTE_SUFFIX))
    return own, note_for(own)


def _belongs(note: Path, job: Job) -> bool:
    try:
        return f"(episode {job.id})" in note.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def episode_failed(ws: Workspace, job: Job, stage: str, reason: str) -> Path:
    """Note (and a copy of the original) for an episode that failed in `stage`."""
    ws.failed.mkdir(parents=True, exist_ok=True)
    copy, note = _episode_paths(ws, job)
    original = ws.abs(job.original)
    if original.is_file() and not copy.exists():
        with contextlib.suppress(OSError):  # a missing copy must not hide the note
            shutil.copyfile(original, copy)
    atomic_write_text(note, note_text(job.source, reason, job=job, stage=stage))
    return note


def clear_episode(ws: Workspace, job: Job) -> None:
    """After a successful retry the note no longer applies; neither does the copy."""
    for copy in (ws.failed / fit_name(job.source, reserve=len(NOTE_SUFFIX)),
                 ws.failed / fit_name(f"{Path(job.source).stem} ({job.id})"
                                      f"{Path(job.source).suffix}", reserve=len(NOTE_SUFFIX))):
        note = note_for(copy)
        if note.exists() and _belongs(note, job):
            note.unlink()
            copy.unlink(missing_ok=True)


@dataclass(frozen=True)
class Rejection:
    """A file rejected at the door, as `learncast failed` lists it."""

    note: Path
    file: Path
    reason: str


def door_rejections(ws: Workspace) -> list[Rejection]:
    """Notes in `failed/` of files that never became episodes (oldest first)."""
    found = []
    if not ws.failed.is_dir():
        return found
    notes = sorted(ws.failed.glob(f"*{NOTE_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    for note in notes:
        text = note.read_text(encoding="utf-8", errors="replace")
        if not text.startswith(_DOOR):
            continue
        lines = text.splitlines()
        start = next((i + 1 for i, line in enumerate(lines) if line.startswith("What was wrong")),
                     len(lines))
        reason_lines = []
        for line in lines[start:]:
            if not line.strip():
                break
            reason_lines.append(line.strip())
        reason = "\n  ".join(reason_lines)
        found.append(Rejection(note, note.with_name(note.name[:-len(NOTE_SUFFIX)]), reason))
    return found


def clear_rejection(rejection: Rejection) -> None:
    """Remove a rejected file, its sidecar and its note (the producer has dealt with them)."""
    text = rejection.note.read_text(encoding="utf-8", errors="replace")
    sidecars = [line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith(_SIDECAR)]
    for name in sidecars:
        (rejection.note.parent / name).unlink(missing_ok=True)
    rejection.file.unlink(missing_ok=True)
    rejection.note.unlink()
