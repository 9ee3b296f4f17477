"""Streaming decode and windowing: what keeps transcription memory flat for long episodes."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.asr.audio import (
    BLOCK_SAMPLES,
    SAMPLE_RATE,
    dbfs,
    energy,
    rms_dbfs,
    stream_16k_mono,
    windows,
)
from pipeline.errors import PipelineError


def _blocks(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def _speech_like(seconds: float, seed: int = 1) -> np.ndarray:
    """Noise at speech level, never quieter than -30 dBFS over any 100 ms."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, int(seconds * SAMPLE_RATE))).astype(np.float32)


def test_windows_cut_in_the_quiet_gap_and_join_back_exactly() -> None:
    signal = _speech_like(100)
    gaps = (27.3, 55.1, 82.4)  # one pause near each nominal boundary (every 28 s, ±4 s)
    for gap in gaps:
        start = int(gap * SAMPLE_RATE)
        signal[start:start + SAMPLE_RATE // 4] *= 1e-4  # 250 ms pause
    parts = list(windows(_blocks(signal, 7 * SAMPLE_RATE), 28 * SAMPLE_RATE, 4 * SAMPLE_RATE))
    offsets = [offset for offset, _ in parts]
    assert offsets[0] == 0 and len(parts) == 4
    for (offset, piece), (next_offset, _) in itertools.pairwise(parts):
        assert offset + len(piece) == next_offset
    for cut, gap in zip(offsets[1:], gaps, strict=True):  # every cut inside its pause
        assert gap <= cut / SAMPLE_RATE <= gap + 0.25
    assert np.array_equal(np.concatenate([piece for _, piece in parts]), signal)


def test_a_cut_never_strays_beyond_the_search_range() -> None:
    signal = _speech_like(60)
    signal[5 * SAMPLE_RATE:6 * SAMPLE_RATE] = 0  # quieter, but far from the boundary
    (_, first), *_ = windows([signal], 20 * SAMPLE_RATE, 2 * SAMPLE_RATE)
    assert 18 * SAMPLE_RATE <= len(first) <= 22 * SAMPLE_RATE


def test_short_input_is_one_window_and_empty_input_none() -> None:
    signal = _speech_like(10)
    [(offset, piece)] = windows(_blocks(signal, SAMPLE_RATE), 10 * SAMPLE_RATE, SAMPLE_RATE)
    assert offset == 0 and np.array_equal(piece, signal)
    assert list(windows([], 10, 1)) == []
    with pytest.raises(ValueError, match="search"):
        list(windows([signal], 10, 10))


def test_levels_in_dbfs() -> None:
    full_scale = np.ones(SAMPLE_RATE, np.float32)
    assert rms_dbfs(full_scale) == pytest.approx(0.0)
    assert rms_dbfs(full_scale * 0.001) == pytest.approx(-60.0)
    assert rms_dbfs(np.zeros(10, np.float32)) == float("-inf")
    halves = np.split(full_scale * 0.1, 2)
    assert dbfs(sum(energy(h) for h in halves), SAMPLE_RATE) == pytest.approx(-20.0)


def test_stream_gives_the_whole_recording_in_blocks(make_media: Any, tmp_path: Path,
                                                    ffmpeg: str) -> None:
    src = make_media(tmp_path / "tone.flac", "-f", "lavfi", "-i", "sine=f=440:d=70:r=44100",
                     "-ac", "2")
    blocks = list(stream_16k_mono(ffmpeg, src))
    assert [len(b) for b in blocks[:-1]] == [BLOCK_SAMPLES] * (len(blocks) - 1)
    assert sum(len(b) for b in blocks) / SAMPLE_RATE == pytest.approx(70.0, abs=0.05)
    assert all(b.dtype == np.float32 for b in blocks)


def _children() -> set[str]:
    found: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update((task / "children").read_text().split())
    return found


def test_stopping_early_leaves_no_ffmpeg_behind(make_media: Any, tmp_path: Path,
                                                ffmpeg: str) -> None:
    src = make_media(tmp_path / "long.flac", "-f", "lavfi", "-i", "anoisesrc=d=300:r=16000")
    before = _children()
    stream = stream_16k_mono(ffmpeg, src)
    next(stream)
    assert _children() - before  # ffmpeg is running
    stream.close()
    assert _children() == before


def test_undecodable_input_says_what_to_do(tmp_path: Path, ffmpeg: str) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("these are meeting notes, not audio\n" * 50)
    with pytest.raises(PipelineError, match=r"(?s)could not decode notes\.wav.*learncast retry"):
        list(stream_16k_mono(ffmpeg, bad))
