"""Two `learncast watch` processes on one inbox, recordings dropped while they work.

Each recording must become exactly one episode, processed once (one attempt at every stage),
and neither process may die of (or log) SQLite's "database is locked".
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import feedparser
import pytest

from tests.conftest import REPO, TEST_ENV, learncast

COUNT = 20


def _published(ws: Path) -> int:
    proc = learncast(ws, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return sum(e["status"] == "published" for e in json.loads(proc.stdout))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_two_watchers_take_each_of_20_drops_exactly_once(workspace_dir: Path, tone,
                                                         tmp_path: Path) -> None:
    ws = workspace_dir
    env = {**os.environ, **TEST_ENV}
    logs = [tmp_path / f"watch-{i}.log" for i in range(2)]
    procs = []
    for log_path in logs:
        with open(log_path, "w") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline", "--workspace", str(ws), "watch"],
                cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT))
    names = [f"drop-{i:02d}.wav" for i in range(COUNT)]
    try:
        for i, name in enumerate(names):
            # written elsewhere, then renamed in: a finished file appears at once
            src = tone(tmp_path / "staging" / name, seconds=1.5, freq=220 + 20 * i)
            os.replace(src, ws / "inbox" / name)
            time.sleep(0.3)  # a steady trickle while both watchers are busy
        deadline = time.monotonic() + 600
        while _published(ws) < COUNT:
            assert all(p.poll() is None for p in procs), "a watcher died: " + "\n".join(
                p.read_text()[-2000:] for p in logs)
            assert time.monotonic() < deadline, "timed out waiting for 20 published episodes"
            time.sleep(1.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    output = "\n".join(p.read_text() for p in logs)
    assert [p.returncode for p in procs] == [0, 0], output[-3000:]
    assert "database is locked" not in output and "Traceback" not in output, output[-3000:]

    episodes = json.loads(learncast(ws, "status", "--json").stdout)
    assert sorted(e["source"] for e in episodes) == names
    assert all(e["status"] == "published" for e in episodes)
    with sqlite3.connect(ws / "state" / "learncast.db") as conn:
        runs = conn.execute("SELECT stage, attempts FROM stage_runs").fetchall()
    retries = [line for line in output.splitlines() if "retrying" in line or "attempt 2" in line]
    assert {a for _, a in runs} == {1}, f"some stage ran twice: {retries}"
    assert sum(s == "prepare" for s, _ in runs) == COUNT
    # the feed learners fetch lists all of them: two publishers of one show never store a
    # feed each without the other's newest episode
    [feed] = (ws / "public" / "feeds").rglob("podcast.xml")
    parsed = feedparser.parse(feed.read_bytes())
    assert len(parsed.entries) == COUNT, sorted(e.title for e in parsed.entries)
    assert sorted(p.name for p in (ws / "archive").rglob("drop-*.wav")) == names
    # both watchers took part (the claim protocol, not luck, kept them apart)
    assert all("drop-" in p.read_text() for p in logs), output[-3000:]
