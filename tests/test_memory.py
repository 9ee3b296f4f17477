"""A 60-minute recording goes through the whole pipeline within 1.5 GB peak RSS (tiny.en).

The hour is real speech (the shared JFK clip looped by ffmpeg); the CLI runs as a child and
the kernel reports its peak RSS through `os.wait4`. The test uses the faster engine (same
tiny.en weights) so that CI stays within its time budget on two cores; `make bench` reports
the figure for both engines (bench/memory.py).

It is a `soak` test (`make test-soak`), not part of CI's `make test-slow`: an hour through
ASR on two cores alone would take CI past its 30-minute budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.memory import LIMIT_MB, make_recording, measure_run
from tests.conftest import TEST_ENV, learncast


@pytest.mark.soak
@pytest.mark.timeout(3000)  # an hour of audio through every stage on two shared cores
def test_an_hour_of_speech_stays_within_1_5_gb(workspace_dir: Path, shared_audio: Path,
                                               ffmpeg: str) -> None:
    src = make_recording(workspace_dir.parent / "hour.flac", 60, ffmpeg)
    os.replace(src, workspace_dir / "inbox" / "town-hall.flac")
    measured = measure_run(workspace_dir, "faster-whisper", env=TEST_ENV)
    status = learncast(workspace_dir, "status", "--json")
    assert measured["returncode"] == 0, status.stdout[-2000:]
    assert '"published"' in status.stdout
    assert measured["peak_rss_mb"] <= LIMIT_MB, measured
