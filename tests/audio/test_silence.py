"""The activity detector's noise floor (pipeline/audio/silence.py), on window levels.

Levels stand for 10 ms windows in dBFS, as `window_levels` produces them; the splice through
the real CLI with real speech is in tests/stages/test_trim.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio.silence import MIN_LEVEL_DB, detect, noise_floor

RNG = np.random.default_rng(7)


def _windows(seconds: float, level_db: float, spread_db: float = 3.0) -> np.ndarray:
    n = round(seconds / 0.01)
    return level_db + RNG.normal(0, spread_db, n) if spread_db else np.full(n, level_db)


def _speech(seconds: float) -> np.ndarray:
    """Syllables: 0.25 s loud, 0.1 s softer, repeated."""
    parts = []
    while sum(len(p) for p in parts) * 0.01 < seconds:
        parts += [_windows(0.25, -18.0), _windows(0.1, -34.0)]
    return np.concatenate(parts)


def test_digital_silence_does_not_set_the_floor_when_there_is_room_tone() -> None:
    zeros = _windows(3.0, MIN_LEVEL_DB, 0)
    levels = np.concatenate([_windows(2.5, -63.0), _speech(5.0), zeros, _speech(4.0)])
    assert (levels == MIN_LEVEL_DB).mean() > 0.2  # enough zeros to be the 10th percentile
    floor = noise_floor(levels, margin_db=12.0)
    assert -68.0 < floor < -60.0
    found = detect(levels, margin_db=12.0, min_sound_s=0.08)
    assert found.first_sound_s == pytest.approx(2.5, abs=0.05)  # the lead-in is room tone


def test_without_room_tone_digital_silence_stays_the_floor_and_soft_syllables_stay_sound(
        ) -> None:
    """A noise-gated (or synthetic) recording: zeros between phrases, a soft first word.
    Measured without the zeros, the "floor" would be the soft word, and trim would cut it."""
    zeros = _windows(2.0, MIN_LEVEL_DB, 0)
    levels = np.concatenate([zeros, _windows(0.6, -38.0, 2.0), _speech(6.0),
                             _windows(0.3, MIN_LEVEL_DB, 0), _speech(3.0), zeros])
    assert noise_floor(levels, margin_db=12.0) == MIN_LEVEL_DB
    found = detect(levels, margin_db=12.0, min_sound_s=0.08)
    assert found.first_sound_s == pytest.approx(2.0, abs=0.02)


def test_without_digital_silence_the_floor_is_the_tenth_percentile() -> None:
    levels = np.concatenate([_windows(2.0, -55.0), _speech(6.0), _windows(2.0, -55.0)])
    assert noise_floor(levels, margin_db=12.0) == pytest.approx(np.percentile(levels, 10))
