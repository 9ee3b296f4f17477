"""Cutting a soundbite with pydub: only the span, faded, loudness-matched (re-measured by the
test's own ebur128 reading), exported through the pipeline's ffmpeg and no other."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.loudness import PROFILES
from pipeline.audio.soundbites import cut
from pipeline.errors import PipelineError
from tests.stages.finishing import duration, ebur128, pcm, speech_at

PROFILE = PROFILES["apple-podcast"]


@pytest.fixture
def master(tmp_path: Path, ffmpeg: str, shared_audio: Path) -> Path:
    """A 104 s speech master, quieter than the target so the clip needs gain."""
    return speech_at(ffmpeg, shared_audio / "longform_concat_16k.flac",
                     tmp_path / "master.wav", -22.0)


def _fake_tools(folder: Path) -> Path:
    """`ffmpeg` and `ffprobe` that leave a mark and fail: put first on PATH, they must never
    run (pydub looks for both on PATH by default)."""
    folder.mkdir()
    for name in ("ffmpeg", "ffprobe", "avconv", "avprobe"):
        tool = folder / name
        tool.write_text(f"#!/bin/sh\necho {name} >> {folder / 'ran'}\nexit 1\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


def test_a_clip_is_the_span_faded_and_at_the_target(tmp_path: Path, ffmpeg: str, master: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _fake_tools(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fakes}{os.pathsep}{os.environ['PATH']}")
    dest = tmp_path / "clip.mp3"
    figures = cut(ffmpeg, master, dest, codec="pcm_s16le", start_s=36.35, duration_s=20.0,
                  profile=PROFILE, headroom_db=1.0, fade_in_s=0.2, fade_out_s=0.5,
                  bitrate_kbps=128, sample_rate=44100)
    assert not (fakes / "ran").exists()  # only the pipeline's ffmpeg ran
    assert duration(dest) == pytest.approx(20.0, abs=0.08)
    got = ebur128(ffmpeg, dest)
    assert abs(got["i"] - PROFILE.integrated) <= 0.5, got
    assert got["tp"] <= PROFILE.true_peak + 0.05, got
    assert figures.final.integrated == pytest.approx(got["i"], abs=0.15)
    # the span's own loudness (JFK, louder than the master's average) decided the gain
    assert figures.before.integrated != pytest.approx(-22.0, abs=1.0)
    assert figures.gain_db == pytest.approx(PROFILE.integrated - figures.before.integrated,
                                            abs=0.6)
    assert not figures.limited
    # the span: the clip is what the master has there (JFK at 36.35 s), scaled by the gain
    src = pcm(ffmpeg, master, rate=16000)[round(36.35 * 16000):round(56.35 * 16000)]
    out = pcm(ffmpeg, dest, rate=16000)[:len(src)]
    n = min(len(src), len(out))
    a, b = src[16000:n - 16000], out[16000:n - 16000]  # past the fades
    lag = max(range(-400, 401, 8), key=lambda k: float(np.dot(a[2000:-2000],
                                                             np.roll(b, k)[2000:-2000])))
    corr = np.corrcoef(a[2000:-2000], np.roll(b, lag)[2000:-2000])[0, 1]
    assert corr > 0.95, (corr, lag)
    # faded in and out: the first and last 20 ms are much quieter than the speech inside
    rms = lambda x: float(np.sqrt(np.mean(x ** 2)))  # noqa: E731
    edge = 320
    assert rms(out[:edge]) < rms(out[16000:16000 * 3]) / 4
    assert rms(out[-edge:]) < rms(out[16000:16000 * 3]) / 4


def test_a_span_past_the_end_is_refused(tmp_path: Path, ffmpeg: str, master: Path) -> None:
    with pytest.raises(PipelineError, match="past the end"):
        cut(ffmpeg, master, tmp_path / "late.mp3", codec="pcm_s16le", start_s=500.0,
            duration_s=20.0, profile=PROFILE, headroom_db=1.0, fade_in_s=0.2, fade_out_s=0.5,
            bitrate_kbps=128, sample_rate=44100)
    assert not (tmp_path / "late.mp3").exists()


def test_peaks_that_forbid_the_gain_are_limited_and_the_clip_still_lands(
        tmp_path: Path, ffmpeg: str, make_media: Callable[..., Path]) -> None:
    # a quiet voice-band tone (-28.5 LUFS) with a full-scale click every two seconds: about
    # +12 dB of gain needed, which would put the clicks far past the ceiling
    spiky = make_media(tmp_path / "spiky.wav", "-f", "lavfi", "-i",
                       "aevalsrc='0.08*sin(2*PI*300*t)*(0.6+0.4*sin(2*PI*3*t))"
                       "+0.95*lt(mod(t,2),0.0005)':s=44100:d=30", "-ac", "2")
    dest = tmp_path / "clip.mp3"
    figures = cut(ffmpeg, spiky, dest, codec="pcm_s16le", start_s=5.0, duration_s=20.0,
                  profile=PROFILE, headroom_db=1.0, fade_in_s=0.2, fade_out_s=0.5,
                  bitrate_kbps=128, sample_rate=44100)
    assert figures.limited and figures.gain_db > 10
    got = ebur128(ffmpeg, dest)
    assert abs(got["i"] - PROFILE.integrated) <= 1.0 and got["tp"] <= PROFILE.true_peak, got
