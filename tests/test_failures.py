"""Failure notes in `failed/` (pipeline/failures.py), through the real CLI.

An episode that fails in a later stage keeps its original in `archive/`; `failed/` gets a
copy the producer may fix in place, never a hard link to the archived original, and two
failures of files with the same name keep separate notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import learncast
from tests.dropping import check_status, digest


def _silent(make_media, path: Path, seconds: float) -> Path:
    """Digital silence: accepted at the door, refused by normalise (a later stage)."""
    return make_media(path, "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", str(seconds))


def test_a_failed_episode_gets_a_copy_not_a_link_and_same_names_keep_their_notes(
        workspace_dir: Path, make_media) -> None:
    failed = workspace_dir / "failed"
    ids = []
    for seconds in (3, 4):  # two different recordings, both called same.wav
        _silent(make_media, workspace_dir / "inbox" / "same.wav", seconds)
        proc = learncast(workspace_dir, "run")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        ids.append(check_status(workspace_dir)[-1]["id"])
    episodes = {e["id"]: e for e in json.loads(learncast(workspace_dir, "status",
                                                         "--json").stdout)}
    assert [episodes[i]["status"] for i in ids] == ["failed", "failed"]
    notes = sorted(p.name for p in failed.glob("*.error.txt"))
    assert notes == sorted(["same.wav.error.txt", f"same ({ids[1]}).wav.error.txt"])
    for job_id, copy in zip(ids, (failed / "same.wav", failed / f"same ({ids[1]}).wav"),
                            strict=True):
        note = copy.with_name(copy.name + ".error.txt").read_text()
        assert f"episode {job_id}" in note and f"learncast retry {job_id}" in note
        original = workspace_dir / episodes[job_id]["files"]["original"]
        assert digest(copy) == digest(original) == episodes[job_id]["sha256"]
        assert copy.stat().st_ino != original.stat().st_ino and copy.stat().st_nlink == 1
        copy.write_bytes(b"the producer edits the copy in place")
        assert digest(original) == episodes[job_id]["sha256"], "the archive was edited"
