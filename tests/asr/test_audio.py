"""Windowing and levels: what keeps transcription memory flat for long episodes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.asr.audio import SAMPLE_RATE, dbfs, energy, windows


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
    assert dbfs(energy(full_scale), SAMPLE_RATE) == pytest.approx(0.0)
    assert dbfs(energy(full_scale * 0.001), SAMPLE_RATE) == pytest.approx(-60.0)
    assert dbfs(0.0, 10) == dbfs(0.0, 0) == float("-inf")
    halves = np.split(full_scale * 0.1, 2)
    assert dbfs(sum(energy(h) for h in halves), SAMPLE_RATE) == pytest.approx(-20.0)
