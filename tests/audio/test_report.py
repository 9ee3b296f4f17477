"""The sound report: every field present, JSON without NaN, and its figures agreeing with an
independent ebur128 measurement of the files it describes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.sound import frames
from bench.sound_inputs import alternating_voices
from tests.audio.sound import master
from tests.stages.finishing import ebur128

FIELDS = {"loudness_range_lu", "section_spread_lu", "noise_floor_lufs", "speech_to_noise_lu",
          "integrated_lufs", "true_peak_dbtp", "leveler", "linear_gain_db", "limiter",
          "noise_reduction"}


def test_report_fields_and_figures(ffmpeg: str, shared_audio: Path, tmp_path: Path) -> None:
    built = alternating_voices(ffmpeg, shared_audio, tmp_path / "in", rounds=1)
    dest = tmp_path / "master.flac"
    figures, report = master(ffmpeg, built.path, dest, leveler=True, noise_reduction="light",
                             hum="auto")
    assert set(report) == FIELDS
    json.dumps(report, allow_nan=False)  # stored in SQLite and qa.json: strict JSON only
    for key in ("loudness_range_lu", "noise_floor_lufs", "speech_to_noise_lu",
                "integrated_lufs", "true_peak_dbtp"):
        assert set(report[key]) == {"before", "after"}, key
    before, after = ebur128(ffmpeg, built.path), ebur128(ffmpeg, dest)
    assert report["loudness_range_lu"]["before"] == pytest.approx(before["lra"], abs=0.15)
    assert report["loudness_range_lu"]["after"] == pytest.approx(after["lra"], abs=0.15)
    assert report["integrated_lufs"]["after"] == pytest.approx(after["i"], abs=0.15)
    assert report["true_peak_dbtp"]["after"] == pytest.approx(after["tp"], abs=0.15)
    spread = report["section_spread_lu"]
    assert spread["sections"] >= 3 and spread["before"] >= 8 and spread["after"] <= 3
    low, high = report["leveler"]["gain_range_db"]
    assert report["leveler"]["enabled"] is True and -12 <= low < 0 < high <= 12
    assert report["linear_gain_db"] == pytest.approx(figures["gain_db"], abs=0.01)
    assert set(report["limiter"]) == {"inserted", "acted", "peak_without_limiter_dbtp",
                                      "ceiling_dbtp"}
    nr = report["noise_reduction"]
    assert nr["mode"] == "light" and nr["hum_setting"] == "auto"
    # the floor: the quietest tenth of the momentary loudness, independently
    t, m, _, _, _ = frames(ffmpeg, built.path)
    floor = float(np.percentile(np.maximum(m[t >= 0.4 - 1e-3], -120.0), 10))
    assert report["noise_floor_lufs"]["before"] == pytest.approx(floor, abs=0.15)


def test_linear_path_reports_without_decoding_the_master(ffmpeg: str, shared_audio: Path,
                                                         tmp_path: Path) -> None:
    """Leveler, hum and noise reduction off: the figures of before, moved by the gain."""
    built = alternating_voices(ffmpeg, shared_audio, tmp_path / "in", rounds=1)
    dest = tmp_path / "master.flac"
    figures, report = master(ffmpeg, built.path, dest)
    assert figures["leveler"] is False and figures["limited"] is False
    assert figures["master"]["integrated"] == pytest.approx(  # computed, not measured again
        figures["before"]["integrated"] + figures["gain_db"], abs=0.02)
    after = ebur128(ffmpeg, dest)
    assert report["integrated_lufs"]["after"] == pytest.approx(after["i"], abs=0.15)
    assert report["loudness_range_lu"]["after"] == report["loudness_range_lu"]["before"]
    assert report["section_spread_lu"]["after"] == report["section_spread_lu"]["before"]
    assert report["leveler"]["gain_range_db"] == [0.0, 0.0]
    assert report["noise_reduction"]["hum"] is None
