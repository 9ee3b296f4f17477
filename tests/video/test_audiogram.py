"""The audiogram renderer (moviepy): a real MP4 with moving bars driven by the audio, the
captions burned in while their cue is up, the encode settings of every MP4 — and only the
pipeline's ffmpeg ever runs."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pipeline.captions.segmenter import Cue
from pipeline.video.audiogram import (
    LevelMeter,
    Style,
    caption_font_px,
    clip_cues,
    layout_for,
    load_font,
    render,
)
from pipeline.workspace import Context
from tests.stages.finishing import add_artwork, speech_at
from tests.video.frames import frames_at, streams, text_pixels

CUES = [Cue(0.5, 3.0, ("And so, my fellow Americans,", "ask not what your country")),
        Cue(4.6, 7.4, ("ask what you can do", "for your country."))]


@pytest.fixture
def speech(tmp_path: Path, ffmpeg: str, shared_audio: Path) -> Path:
    return speech_at(ffmpeg, shared_audio / "jfk.flac", tmp_path / "jfk.wav", -16.0)


def _logging_ffmpeg(folder: Path, real: str) -> Path:
    """An ffmpeg that logs its arguments and runs the real one: what the renderer is given."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "our-ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {folder / "calls"}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    fakes = folder / "path"
    fakes.mkdir()
    for name in ("ffmpeg", "ffprobe"):
        fake = fakes / name
        fake.write_text(f"#!/bin/sh\necho {name} >> {folder / 'wrong'}\nexit 1\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return wrapper


def test_render_draws_bars_captions_and_encodes_like_every_mp4(
        tmp_path: Path, ffmpeg: str, speech: Path, ctx: Context,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ours = _logging_ffmpeg(tmp_path / "tools", ffmpeg)
    monkeypatch.setenv("PATH", f"{tmp_path / 'tools' / 'path'}{os.pathsep}{os.environ['PATH']}")
    art = add_artwork(ctx)
    dest = tmp_path / "audiogram.mp4"
    style = Style(width=1280, height=720, fps=15, crf=20, preset="veryfast", aac_kbps=160)
    got = render(str(ours), speech, dest, duration_s=8.0, cues=CUES, title="Ask not",
                 show="Learning Weekly", artwork=art, style=style, channels=2)

    calls = (tmp_path / "tools" / "calls").read_text()
    assert "rawvideo" in calls and "libx264" in calls and "f32le" in calls
    assert not (tmp_path / "tools" / "wrong").exists()  # no ffmpeg/ffprobe from PATH ran

    info = streams(dest)
    assert (info["video_codec"], info["pix_fmt"], info["width"], info["height"]) == (
        "h264", "yuv420p", 1280, 720)
    assert info["fps"] == pytest.approx(15.0)
    assert (info["audio_codec"], info["rate"], info["channels"]) == ("aac", 48000, 2)
    assert info["duration"] == pytest.approx(8.0, abs=0.15)
    assert got.frames == 120 and got.caption_px == 48

    layout = layout_for(1280, 720)
    times = [1.0, 1.6, 2.2, 3.6, 5.0, 6.2]
    frames = frames_at(dest, times)
    bars = {t: layout.bars.crop(frames[t]).astype(int) for t in times}
    caps = {t: layout.captions.crop(frames[t]) for t in times}
    # the bars move with the speech: frames of speech differ in the bars' box
    moved = [np.abs(bars[a] - bars[b]).mean() for a, b in itertools.pairwise(times)]
    assert max(moved) > 2.0, moved
    # burned-in captions: white text while a cue is up, none between cues
    assert text_pixels(caps[1.6]) > 1500 and text_pixels(caps[5.0]) > 1500
    assert text_pixels(caps[3.6]) < 50
    # the still layers (artwork, title) stay put
    art_box = layout.art
    assert np.abs(art_box.crop(frames[1.0]).astype(int)
                  - art_box.crop(frames[6.2]).astype(int)).mean() < 2.0
    assert text_pixels(layout.title.crop(frames[1.0])) > 200


def test_caption_size_fits_the_profiles_line_length() -> None:
    for size, limit in (((1280, 720), 42), ((720, 720), 42), ((1280, 720), 32)):
        layout = layout_for(*size)
        px = caption_font_px("", layout.captions, limit, 2, size[1])
        assert px <= round(size[1] / 15)
        line = ("Give feedback your team can act on, then check" * 2)[:limit]
        assert load_font("", px).getlength(line) <= layout.captions.w
    # 42 characters on a phone: a 720p frame 360 pt wide shows 48 px text at 13.5 pt
    assert caption_font_px("", layout_for(1280, 720).captions, 42, 2, 720) == 48


def test_clip_cues_are_shifted_and_cut_to_the_clip() -> None:
    got = clip_cues(CUES, 2.0, 4.0)
    assert [(c.start, c.end) for c in got] == [(0.0, 1.0), (2.6, 4.0)]


def test_the_level_meter_holds_one_window_not_the_episode(ffmpeg: str, speech: Path) -> None:
    meter = LevelMeter(ffmpeg, speech, bands=32, fps=15)
    try:
        levels = [meter.levels(i / 15) for i in range(15 * 10)]
        assert len(meter._buf) < 40_000  # about a second of 16 kHz samples, whatever the length
        speaking = np.mean([lv.mean() for lv in levels[15:45]])  # JFK speaks from about 1 s
        assert speaking > 0.2 and all(lv.shape == (32,) for lv in levels)
        again = meter.levels(1.0)  # an earlier time restarts the decode there
        assert again.shape == (32,) and meter._start <= 16000
    finally:
        meter.close()
