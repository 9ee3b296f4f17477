"""A 60-minute recording goes through the whole pipeline within 1.5 GB peak RSS (tiny.en).

The hour is real speech: the shared clips joined in shuffled rounds (bench/memory.py says why
not one clip looped). The CLI runs as a child of a lean launcher and the kernel reports its
peak RSS through `wait4`. The test uses the faster engine (same tiny.en weights) to keep CI's
slow suite within its budget; `make bench` reports the figure for both engines.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.memory import LIMIT_MB, make_recording, measure_run, transcript_figures
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.slow


@pytest.mark.longest
@pytest.mark.timeout(1800)
def test_an_hour_of_speech_stays_within_1_5_gb(workspace_dir: Path, ffmpeg: str) -> None:
    src = make_recording(workspace_dir.parent / "hour.flac", 60, ffmpeg)
    os.replace(src, workspace_dir / "inbox" / "town-hall.flac")
    measured = measure_run(workspace_dir, "faster-whisper", env=TEST_ENV, timeout_s=1500)
    assert measured["returncode"] == 0, measured  # 0: every recording published
    assert measured["peak_rss_mb"] <= LIMIT_MB, measured
    figures = transcript_figures(workspace_dir, src.with_suffix(".txt").read_text())
    assert figures["asr_windows"] >= 6, figures  # streamed in ~10-minute windows
    assert figures["wer"] <= 0.15, figures  # the whole hour, transcribed (measured 5.9 %)
