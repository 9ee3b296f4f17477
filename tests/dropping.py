"""Drop bad files beside a good one through the real CLI, and check the survival promise.

The promise for anything a producer can drop: the pipeline keeps going for the other files,
the bad file gets a note in `failed/` that says what to do, its original is kept byte for
byte, and `learncast status` / `status --json` still work afterwards (also on the next run,
which must not trip over what the first one left behind).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.failures import note_for
from tests.conftest import learncast

NOTE_SUFFIX = ".error.txt"


def digest(path: Path | bytes) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@dataclass(frozen=True)
class Drop:
    """One dropped recording: its path in the inbox and its content's sha256."""

    path: Path | bytes
    sha256: str


def drop(path: Path | bytes) -> Drop:
    """Remember what a file in the inbox holds, to check it is kept byte for byte."""
    return Drop(path, digest(path))


def make_good(ffmpeg: str, inbox: Path, name: str = "good.wav", freq: int = 300) -> Path:
    path = inbox / name
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency={freq}:duration=2", str(path)], check=True)
    return path


def strict_json(text: str) -> object:
    """JSON as any other tool reads it: NaN and Infinity are not JSON."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")
    return json.loads(text, parse_constant=refuse)


def check_status(ws: Path) -> list[dict[str, object]]:
    """`status` and `status --json` work (exit 0, strict JSON); returns the episodes."""
    table = learncast(ws, "status")
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr[-3000:]
    proc = learncast(ws, "status", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    episodes = strict_json(proc.stdout)
    assert isinstance(episodes, list)
    return episodes


def failed_files(ws: Path) -> dict[str, Path]:
    """Files kept in `failed/` (not notes), by content sha256."""
    folder = ws / "failed"
    if not folder.is_dir():
        return {}
    out = {}
    for entry in os.scandir(os.fsencode(folder)):
        name = os.fsdecode(entry.name)
        if name.endswith(NOTE_SUFFIX) or not entry.is_file(follow_symlinks=False):
            continue
        out[digest(entry.path)] = Path(os.fsdecode(entry.path))
    return out


@dataclass(frozen=True)
class Checked:
    notes: dict[Drop, str]  # each bad drop's failure note
    output: str  # what the first `learncast run` printed (stdout and stderr)
    episodes: list[dict[str, object]]  # `status --json` after it


def run_and_check(ws: Path, bad: list[Drop], *, good: str = "good.wav",
                  env: dict[str, str] | None = None) -> Checked:
    """One `learncast run` over the inbox, checked; returns the bad drops' notes.

    Asserts the whole promise: exit 1 with no traceback, the good recording published, every
    bad drop kept byte-identical in `failed/` beside a note that says what was wrong and what
    to do, `status` working, and a second run finding nothing left to trip over.
    """
    proc = learncast(ws, "run", env=env)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-4000:]
    assert proc.returncode == 1, output[-4000:]
    episodes = check_status(ws)
    by_source = {e["source"]: e for e in episodes}
    assert by_source.get(good, {}).get("status") == "published", (by_source, output[-3000:])
    kept = failed_files(ws)
    notes: dict[Drop, str] = {}
    for d in bad:
        assert d.sha256 in kept, (f"{d.path!r} is not kept byte for byte in failed/",
                                  sorted(os.listdir(ws / "failed")), output[-3000:])
        file = kept[d.sha256]
        note = note_for(file)
        text = note.read_text(encoding="utf-8")
        assert "What was wrong" in text and "Traceback" not in text, text
        assert "drop" in text or "retry" in text, text
        notes[d] = text
    again = learncast(ws, "run", env=env)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr[-3000:]
    check_status(ws)
    return Checked(notes, output, episodes)
