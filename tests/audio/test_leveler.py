"""The speech leveler, re-measured on the masters it makes (ebur128, read by the bench's own
parser): two voices 10 dB apart come out level, pauses are not pulled up, the integrated
target and the true-peak ceiling still hold, and the gain stays within its bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.sound import frames, noise_relative, section_spread
from bench.sound_inputs import Built, alternating_voices, long_pauses
from pipeline.audio import leveler
from pipeline.audio.loudness import Loudness, LoudnessSeries
from tests.audio.sound import CEILING, MONO, master


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, shared_audio: Path) -> Built:
    """JFK at -20 LUFS, then an LJSpeech voice at -30 LUFS (a far guest), twice (44 s)."""
    return alternating_voices(ffmpeg, shared_audio, tmp_path_factory.mktemp("voices"))


def test_two_voices_10_db_apart_come_out_within_1_5_lu(ffmpeg: str, voices: Built,
                                                       tmp_path: Path) -> None:
    assert section_spread(ffmpeg, voices.path, voices) >= 9.0  # the input is what it claims
    linear = tmp_path / "linear.flac"
    master(ffmpeg, voices.path, linear)
    assert section_spread(ffmpeg, linear, voices) >= 9.0  # a linear gain keeps them apart
    levelled = tmp_path / "levelled.flac"
    _, report = master(ffmpeg, voices.path, levelled, leveler=True)
    assert section_spread(ffmpeg, levelled, voices) <= 1.5
    low, high = report["leveler"]["gain_range_db"]
    assert low < -3 and high > 3  # the near voice came down, the far one up
    assert report["section_spread_lu"]["before"] >= 8
    assert report["section_spread_lu"]["after"] <= 3
    assert report["loudness_range_lu"]["after"] < report["loudness_range_lu"]["before"] - 5


def test_target_and_true_peak_ceiling_still_hold(ffmpeg: str, voices: Built,
                                                 tmp_path: Path) -> None:
    """Raising the far voice raises its peaks: the limiter must keep them under the ceiling,
    and the master must still land on the integrated target."""
    dest = tmp_path / "master.flac"
    figures, report = master(ffmpeg, voices.path, dest, leveler=True)
    _, _, _, integrated, peak = frames(ffmpeg, dest)
    assert abs(integrated - MONO.integrated) <= 0.5, (integrated, figures)
    assert peak <= CEILING + 0.05, (peak, figures)
    assert figures["limited"] is True and report["limiter"]["inserted"] is True
    assert report["limiter"]["acted"] is True  # without it the peak would have passed
    assert report["limiter"]["peak_without_limiter_dbtp"] > CEILING
    assert figures["master"]["integrated"] == pytest.approx(integrated, abs=0.15)
    assert figures["master"]["true_peak"] == pytest.approx(peak, abs=0.15)


def test_room_tone_in_a_25_s_pause_is_not_pulled_up(ffmpeg: str, shared_audio: Path,
                                                   tmp_path: Path) -> None:
    built = long_pauses(ffmpeg, shared_audio, tmp_path / "in")
    pause = [built.noise_only[1]]
    assert pause[0][1] - pause[0][0] == pytest.approx(25.0, abs=0.01)
    dest = tmp_path / "master.flac"
    master(ffmpeg, built.path, dest, leveler=True)
    rise = noise_relative(ffmpeg, dest, pause) - noise_relative(ffmpeg, built.path, pause)
    assert rise <= 3.0, rise
    # and the room tone keeps its own level through the pause (no gain riding in it)
    t, m, _, _, _ = frames(ffmpeg, dest)
    inside = m[(t - 0.4 >= pause[0][0] + 1.5) & (t <= pause[0][1] - 1.5)]
    assert np.percentile(inside, 95) - np.percentile(inside, 5) <= 3.0


def test_gain_is_bounded_by_max_gain(ffmpeg: str, shared_audio: Path, tmp_path: Path) -> None:
    """A guest 20 dB down: with a 4 dB bound the leveler closes at most 8 dB of the gap."""
    built = alternating_voices(ffmpeg, shared_audio, tmp_path / "in", rounds=1, drop_db=20.0)
    dest = tmp_path / "master.flac"
    _, report = master(ffmpeg, built.path, dest, leveler=True, max_gain_db=4.0)
    low, high = report["leveler"]["gain_range_db"]
    assert low >= -4.01 and high <= 4.01
    assert section_spread(ffmpeg, dest, built) >= 20.0 - 8.0 - 1.0


def _series(momentary: list[float]) -> LoudnessSeries:
    m = np.array(momentary, dtype=float)
    t = np.arange(1, len(m) + 1) * 0.1
    return LoudnessSeries(Loudness(-20.0, -3.0, 5.0), t, m, m, m + 10)


def test_gain_is_held_at_the_lower_side_in_a_pause() -> None:
    """Loud speech, a pause of room noise, quiet speech: the pause gets the lower gain of its
    two neighbours (the loud side's), never the quiet side's boost."""
    rng = np.random.default_rng(1)
    loud = list(-18 + rng.normal(0, 2, 100))
    pause = list(-60 + rng.normal(0, 1, 60))
    quiet = list(-28 + rng.normal(0, 2, 100))
    series = _series([-120.0] * 3 + loud + pause + quiet)
    curve = leveler.plan(series, max_gain_db=12.0)
    g = curve.gain_db
    loud_gain = float(np.median(g[10:90]))
    quiet_gain = float(np.median(g[180:250]))
    assert quiet_gain - loud_gain == pytest.approx(10.0, abs=1.5)
    middle = g[120:145]  # the pause, away from the smoothing at its edges
    assert np.all(np.abs(middle - loud_gain) < 1.0)
    assert not curve.speech[115:150].any()


def test_predicted_integrated_matches_bs1770_gating() -> None:
    """A flat curve predicts the measured integrated loudness back (same gating)."""
    m = [-120.0] * 3 + [-20.0] * 50 + [-45.0] * 50  # the quiet half is gated out (-10 LU)
    series = _series(m)
    integrated, peak = leveler.predict(series, leveler.GainCurve.flat(series))
    assert integrated == pytest.approx(-20.0, abs=0.01)
    assert peak == pytest.approx(-10.0, abs=0.01)
