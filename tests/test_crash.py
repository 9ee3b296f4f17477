"""Crash at every stage: `kill -9` mid-stage, run again, and nothing is lost or doubled.

Two kill points per stage, both named crash points of the real CLI (`pipeline.crashpoints`,
the one test seam; no mocks):
- `start`: the runner has recorded the stage as running and stops inside it (`stage:<name>`);
- `write`: the stage has written a complete temporary file beside one of its final paths and
  stops just before the atomic rename (`replace:<file glob>`), the moment a crash leaves the
  most debris.
The rerun must end with exactly one published episode, the original byte-identical in
archive/, no temporary file anywhere in the workspace, one object per deliverable in public/
and one entry in the feed, whose enclosure exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import feedparser
import pytest

from pipeline import runner
from pipeline.crashpoints import MARKER_ENV, PAUSE_AT_ENV
from pipeline.fsutil import TEMP_MARKER
from pipeline.storage.local import META_SUFFIX
from tests.conftest import REPO, TEST_ENV, learncast

#: Real speech, but short, and the fast engine: each case runs the whole pipeline twice.
SIDECAR = ("title: JFK crash drill\ndescription: Ask not.\n"
           "chapters:\n  - {start: '0:00', title: Opening}\n  - {start: '0:05', title: Ask}\n")

#: Per stage, a final file name (glob) the stage writes through `atomic_path`.
WRITES = {
    "prepare": "source.flac",
    "trim": "trimmed.flac",
    "normalise": "master.flac",
    "transcribe": "transcript.json",
    "diarize": "speakers.json",
    "encode": "encoded.mp3",
    "caption": "jfk-crash-drill-*.vtt",
    "chapters": "chapters.json",
    "package": "jfk-crash-drill-*.mp3",
    "upload": "jfk-crash-drill-*-????????????.mp3",
    "publish": "podcast.xml",
}

CASES = [pytest.param("start", s.name, id=f"{s.name}-start") for s in runner.STAGES] + [
    pytest.param("write", name, id=f"{name}-write") for name in WRITES]


def _status(ws: Path) -> list[dict]:
    proc = learncast(ws, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _crash(ws: Path, env: dict[str, str], marker: Path, timeout: float = 240) -> None:
    """Start `learncast run`, wait until it reports the kill point, then SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace", str(ws), "run"],
                            cwd=REPO, env={**os.environ, **TEST_ENV, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {proc.returncode}) before the kill "
                                     f"point: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the kill point")
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no finally blocks, no atexit, no cleanup
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.slow
@pytest.mark.parametrize(("point", "stage"), CASES)
def test_kill_9_at_every_stage_then_rerun(point: str, stage: str, workspace_dir: Path,
                                          shared_audio: Path, tmp_path: Path) -> None:
    ws = workspace_dir
    shutil.copyfile(shared_audio / "jfk.flac", ws / "inbox" / "jfk.flac")
    (ws / "inbox" / "jfk.yaml").write_text(SIDECAR)
    digest = hashlib.sha256((ws / "inbox" / "jfk.flac").read_bytes()).hexdigest()
    marker = tmp_path / "paused-write.txt"
    where = f"stage:{stage}" if point == "start" else f"replace:{WRITES[stage]}"
    hook = {PAUSE_AT_ENV: where, MARKER_ENV: str(marker)}
    _crash(ws, hook, marker)
    if point == "write":
        left = Path(marker.read_text())
        assert TEMP_MARKER in left.name and left.exists(), "the kill left a temp file behind"
    [mid] = _status(ws)
    assert mid["status"] == "processing" and mid["stage"] == stage

    done = learncast(ws, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    [ep] = _status(ws)
    assert (ep["id"], ep["status"]) == (mid["id"], "published")
    with sqlite3.connect(ws / "state" / "learncast.db") as conn:
        [(stored,)] = conn.execute("SELECT objects FROM episodes").fetchall()
    ep["objects"] = json.loads(stored)
    original = ws / ep["files"]["original"]
    assert original.parent == ws / "archive" or "archive" in original.parts
    assert hashlib.sha256(original.read_bytes()).hexdigest() == digest
    assert not [p for p in ws.rglob(f"*{TEMP_MARKER}*")], "temporary files left behind"
    assert not list((ws / "inbox").iterdir()) and not list((ws / "failed").glob("*"))

    # one object per deliverable in the episode's folder, no leftovers of the first attempt
    folder = (ws / "public" / ep["objects"]["audio"]["key"]).parent
    objects = [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(META_SUFFIX)]
    suffixes = sorted(".chapters.json" if p.name.endswith(".chapters.json") else p.suffix
                      for p in objects)
    assert suffixes == sorted(
        [".mp3", ".vtt", ".srt", ".txt", ".html", ".chapters.json"]), objects
    assert {o["key"] for o in ep["objects"].values()} == {
        p.relative_to(ws / "public").as_posix() for p in objects}

    # one feed entry, whose enclosure is a stored object
    [feed_file] = [p for p in (ws / "public").rglob("podcast.xml")]
    feed = feedparser.parse(feed_file.read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    [entry] = feed.entries
    [enclosure] = entry.enclosures
    assert urlparse(enclosure["href"]).path.endswith("/" + ep["objects"]["audio"]["key"])
    assert (ws / "public" / ep["objects"]["audio"]["key"]).is_file()


def test_sweep_removes_dead_writers_temp_files_and_keeps_live_ones(tmp_path: Path) -> None:
    """Fast check of the mechanism the crash cases rely on (no pipeline run)."""
    from pipeline.fsutil import atomic_path, remove_stale_temp_files

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)  # that process has exited and been reaped
    (tmp_path / "feeds").mkdir()
    dead = tmp_path / "feeds" / f"podcast{TEMP_MARKER}{dead_pid}-abc.xml"
    legacy = tmp_path / f"old{TEMP_MARKER}xyz.mp3"  # written before pids were in the name
    dead.write_text("half")
    legacy.write_text("half")
    with atomic_path(tmp_path / "live.txt") as live:  # ours: a writer still running
        live.write_text("in progress")
        assert remove_stale_temp_files([tmp_path]) == 2
        assert live.exists() and not dead.exists() and not legacy.exists()
        assert f"{TEMP_MARKER}{os.getpid()}-" in live.name
    assert (tmp_path / "live.txt").read_text() == "in progress"
