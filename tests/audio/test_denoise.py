"""Noise reduction and hum removal, re-measured on the masters: the noise alone falls by
10 dB or more relative to the speech, hum lines disappear from the spectrum, speech keeps its
timing, a recording without a noise-only stretch is left alone, and (slow) recognition on
the shared references is no worse with noise reduction than without."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.sound import Recogniser, noise_relative
from bench.sound_inputs import Built, noisy_speech
from pipeline.audio import denoise
from pipeline.audio.loudness import measure_series
from tests.audio.sound import master


def _pcm(ffmpeg: str, path: Path, rate: int = 44100) -> np.ndarray:
    out = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
                          "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4").astype(np.float64)


def _floor_down(ffmpeg: str, built: Built, out: Path) -> float:
    return (noise_relative(ffmpeg, built.path, built.noise_only)
            - noise_relative(ffmpeg, out, built.noise_only))


@pytest.mark.parametrize("noise", ["pink", "brown"])
def test_fan_noise_floor_falls_10_db_light_and_more_strong(ffmpeg: str, shared_audio: Path,
                                                           tmp_path: Path, noise: str) -> None:
    built = noisy_speech(ffmpeg, shared_audio, tmp_path / "in", noise, long=False)
    light, strong = tmp_path / "light.flac", tmp_path / "strong.flac"
    _, report = master(ffmpeg, built.path, light, leveler=True, noise_reduction="light",
                       hum="auto")
    master(ffmpeg, built.path, strong, leveler=True, noise_reduction="strong", hum="auto")
    down_light = _floor_down(ffmpeg, built, light)
    down_strong = _floor_down(ffmpeg, built, strong)
    assert down_light >= 10.0, down_light
    assert down_strong >= down_light + 6.0, (down_light, down_strong)
    nr = report["noise_reduction"]
    assert nr["broadband"] is True and nr["hum"] is None
    # learnt from the noise-only lead-in (JFK's clip itself starts with 0.3 s of room)
    assert nr["quiet_stretch"]["end_s"] <= 3.0 + 0.3
    assert abs(nr["noise_rms_dbfs"] - (-35.0)) <= 1.5  # the bed's level, measured
    assert report["speech_to_noise_lu"]["after"] >= report["speech_to_noise_lu"]["before"] + 8


def _line_level(samples: np.ndarray, rate: int, f: float) -> float:
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(10 * np.log10(power[np.abs(freqs - f) <= 1.0].max()))


@pytest.mark.parametrize(("kind", "f0"), [("hum50", 50), ("hum60", 60)])
def test_hum_is_found_and_notched_out(ffmpeg: str, shared_audio: Path, tmp_path: Path,
                                      kind: str, f0: int) -> None:
    built = noisy_speech(ffmpeg, shared_audio, tmp_path / "in", kind, long=False)
    dest = tmp_path / "master.flac"
    _, report = master(ffmpeg, built.path, dest, leveler=True, hum="auto")
    hum = report["noise_reduction"]["hum"]
    assert hum["frequency_hz"] == f0 and hum["detected"] is True
    assert {1, 2, 3} <= set(hum["harmonics"])
    assert report["noise_reduction"]["broadband"] is False  # hum only: no afftdn
    assert _floor_down(ffmpeg, built, dest) >= 20.0
    # the lines themselves, in the noise-only lead-in, relative to the speech's gain
    rate = 8000
    before, after = _pcm(ffmpeg, built.path, rate), _pcm(ffmpeg, dest, rate)
    lead = slice(int(0.5 * rate), int(2.5 * rate))
    gain = report["integrated_lufs"]["after"] - report["integrated_lufs"]["before"]
    for k in (1, 2, 3):
        drop = _line_level(before[lead], rate, f0 * k) + gain - _line_level(after[lead], rate,
                                                                             f0 * k)
        assert drop >= 20.0, (k, drop)


def test_noise_as_loud_as_the_speech_is_not_learnt_from(ffmpeg: str, shared_audio: Path,
                                                        tmp_path: Path) -> None:
    """Pink noise at -25 dBFS under speech at -20 LUFS: the quietest stretch is within 10 LU
    of the speech, so it may hold speech; afftdn would learn the voice as noise. Nothing is
    learnt, no afftdn runs, and the report says why."""
    built = noisy_speech(ffmpeg, shared_audio, tmp_path / "in", "pink", noise_dbfs=-25.0,
                         long=False)
    series = measure_series(ffmpeg, built.path)
    assert denoise.quiet_stretch(series) is None
    _, report = master(ffmpeg, built.path, tmp_path / "m.flac", noise_reduction="strong",
                       hum="auto")
    nr = report["noise_reduction"]
    assert nr["broadband"] is False and nr["hum"] is None
    assert any("no noise-only stretch" in note for note in nr["notes"])
    # JFK on its own has a real pause (4.3-5.4 s of 1961 crowd noise, 25 LU down): found
    found = denoise.quiet_stretch(measure_series(ffmpeg, shared_audio / "jfk.flac"))
    assert found is not None and found.start_s >= 4.0 and found.end_s <= 5.6


def test_speech_keeps_its_timing_and_length(ffmpeg: str, shared_audio: Path,
                                            tmp_path: Path) -> None:
    """afftdn delays its output by 25 ms and the pre-roll adds seconds: both are cut away, so
    the master lines up with the recording sample for sample (lip sync, chapters)."""
    built = noisy_speech(ffmpeg, shared_audio, tmp_path / "in", "pink", long=False)
    dest = tmp_path / "master.flac"
    master(ffmpeg, built.path, dest, noise_reduction="light", hum="off")
    a, b = _pcm(ffmpeg, built.path), _pcm(ffmpeg, dest)
    assert len(a) == len(b)
    seg = slice(5 * 44100, 9 * 44100)
    lags = range(-2000, 2001, 10)
    best = max(lags, key=lambda lag: float(np.dot(a[seg], np.roll(b, -lag)[seg])))
    fine = range(best - 10, best + 11)
    assert max(fine, key=lambda lag: float(np.dot(a[seg], np.roll(b, -lag)[seg]))) == 0


def test_hum_alone_gets_notches_but_no_broadband_reduction(ffmpeg: str, shared_audio: Path,
                                                           tmp_path: Path) -> None:
    """With `noise_reduction = "light"` and only hum in the room, what the notches leave is
    their residue of the hum: afftdn on it would only cost speech (see the slow WER test)."""
    built = noisy_speech(ffmpeg, shared_audio, tmp_path / "in", "hum50", long=False)
    _, report = master(ffmpeg, built.path, tmp_path / "master.flac", leveler=True,
                       noise_reduction="light", hum="auto")
    nr = report["noise_reduction"]
    assert nr["hum"]["frequency_hz"] == 50 and nr["broadband"] is False
    assert any("residue" in note for note in nr["notes"]), nr


SYSTEM_FFMPEG = [p for p in ["/usr/bin/ffmpeg"] if Path(p).is_file()]


@pytest.mark.parametrize("binary", ["bundled", *SYSTEM_FFMPEG])
def test_every_filter_works_in_each_ffmpeg(ffmpeg: str, shared_audio: Path, tmp_path: Path,
                                           binary: str) -> None:
    """The whole chain (afftdn pre-roll with asendcmd, notches, amultiply, limiter, ebur128)
    in the bundled ffmpeg and in Debian 12's 5.1 where the machine has it."""
    exe = ffmpeg if binary == "bundled" else binary
    built = noisy_speech(exe, shared_audio, tmp_path / "in", "hum50+pink", long=False)
    dest = tmp_path / "master.flac"
    figures, report = master(exe, built.path, dest, leveler=True, noise_reduction="light",
                             hum="auto")
    assert report["noise_reduction"]["hum"]["frequency_hz"] == 50
    assert report["noise_reduction"]["broadband"] is True
    assert _floor_down(exe, built, dest) >= 20.0
    assert abs(figures["master"]["integrated"] - figures["target_i"]) <= 0.5


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["pink", "brown", "hum50"])
def test_recognition_is_no_worse_with_noise_reduction(ffmpeg: str, shared_audio: Path,
                                                      tmp_path: Path, noise: str) -> None:
    """104 s of reference speech over -35 dBFS noise: WER (faster-whisper tiny.en) with
    light noise reduction is no worse than without (one word of slack in ~215: tiny.en
    flips a word on any change of the signal)."""
    built = noisy_speech(ffmpeg, shared_audio, tmp_path / "in", noise)
    off, light = tmp_path / "off.flac", tmp_path / "light.flac"
    master(ffmpeg, built.path, off, leveler=True, hum="off")
    master(ffmpeg, built.path, light, leveler=True, noise_reduction="light", hum="auto")
    assert _floor_down(ffmpeg, built, light) >= 10.0
    recogniser = Recogniser(tmp_path / "models")
    wer_off = recogniser.wer(ffmpeg, off, built.reference)
    wer_light = recogniser.wer(ffmpeg, light, built.reference)
    words = len(built.reference.split())
    assert wer_light <= wer_off + 1.0 / words, (wer_off, wer_light)

