"""Encode: bumpers, loudness-verified MP3, MP4 (H.264/AAC, faststart, ≤1080p), timeline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
from mutagen.mp3 import MP3

from pipeline.errors import PipelineError
from pipeline.runner import call_stage
from pipeline.stages import encode
from pipeline.workspace import Context
from tests.conftest import MakeMedia
from tests.stages.finishing import add_artwork, ebur128, make_job, upto, with_settings

#: Run again with the system ffmpeg by `make test-system-ffmpeg`.
pytestmark = pytest.mark.whole_recording

SHOW = {"id": "learning-weekly", "title": "Learning Weekly", "author": "L&D Team"}


def _speechlike(make_media: MakeMedia, path: Path, seconds: float = 8.0, *,
                head: float = 0.0) -> Path:
    """A syllable-rate modulated tone: steady loudness, clear start (after `head` s)."""
    expr = (f"0.2*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))*gte(t,{head})"
            "+0.001*(random(0)-0.5)")
    return make_media(path, "-f", "lavfi", "-i",
                      f"aevalsrc='{expr}':s=44100:d={seconds}", "-ac", "2")


def _bumper(make_media: MakeMedia, path: Path, seconds: float, volume: float) -> Path:
    return make_media(path, "-f", "lavfi", "-i",
                      f"sine=frequency=660:sample_rate=44100:duration={seconds}",
                      "-af", f"volume={volume}dB", "-ac", "2")


def _segment_loudness(ffmpeg: str, path: Path, start: float, length: float) -> float:
    part = path.with_name(f"{path.stem}-{start:.1f}.wav")
    subprocess.run([ffmpeg, "-v", "error", "-y", "-ss", str(start), "-t", str(length),
                    "-i", str(path), str(part)], check=True)
    return ebur128(ffmpeg, part)["i"]


def test_bumpers_are_loudness_matched_and_crossfaded(ctx: Context, make_media: MakeMedia,
                                                      tmp_path: Path) -> None:
    _bumper(make_media, ctx.workspace.assets / "intro.mp3", 3.0, 0)  # far too loud
    _bumper(make_media, ctx.workspace.assets / "outro.ogg", 2.5, -30)  # far too quiet
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/intro.mp3",
                                     "outro": "assets/outro.ogg"}])
    src = _speechlike(make_media, tmp_path / "talk.wav", 8.0)
    job = upto(ctx, make_job(ctx, src), "encode")
    mp3 = ctx.workspace.abs(job.files["encoded_audio"])
    total = MP3(mp3).info.length
    assert total == pytest.approx(3.0 + 8.0 + 2.5 - 2 * 0.5, abs=0.1)
    assert job.results.encode.bumpers == ["intro", "outro"]
    assert job.timeline.intro_s == pytest.approx(2.5, abs=0.05)
    # each part sits at the episode's level (re-measured independently)
    assert _segment_loudness(ctx.ffmpeg, mp3, 0.2, 2.0) == pytest.approx(-16, abs=1.5)
    assert _segment_loudness(ctx.ffmpeg, mp3, 4.0, 4.0) == pytest.approx(-16, abs=1.5)
    assert _segment_loudness(ctx.ffmpeg, mp3, total - 1.8, 1.6) == pytest.approx(-16, abs=1.5)
    whole = ebur128(ctx.ffmpeg, mp3)
    assert abs(whole["i"] + 16) <= 1 and whole["tp"] <= -1


def test_missing_bumper_is_a_clear_error(ctx: Context, make_media: MakeMedia,
                                         tmp_path: Path) -> None:
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/nope.wav"}])
    job = upto(ctx, make_job(ctx, _speechlike(make_media, tmp_path / "t.wav")), "normalise")
    with pytest.raises(PipelineError, match=r"intro 'assets/nope.wav' does not exist"):
        call_stage(encode, job, ctx)


def _video(make_media: MakeMedia, path: Path, size: str, fps: int, seconds: float) -> Path:
    return make_media(path, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:"
                      f"duration={seconds}", "-f", "lavfi", "-i",
                      f"aevalsrc='0.2*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))':s=48000:"
                      f"d={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                      "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2")


def _video_facts(path: Path) -> tuple[str, int, int, float, str]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return (v.codec_context.name, v.width, v.height, float(v.average_rate),
                c.streams.audio[0].codec_context.name)


def test_larger_video_is_downscaled_to_1080p(ctx: Context, make_media: MakeMedia,
                                             tmp_path: Path) -> None:
    src = _video(make_media, tmp_path / "big.mp4", "2560x1440", 12, 1.5)
    job = make_job(ctx, src)
    job = upto(ctx, job, "encode")
    mp4 = ctx.workspace.abs(job.files["encoded_video"])
    assert _video_facts(mp4) == ("h264", 1920, 1080, 12.0, "aac")
    assert job.files["encoded_audio"].endswith(".mp3")  # a video also feeds the audio podcast
    assert ctx.workspace.abs(job.files["encoded_audio"]).is_file()


def test_h264_within_limits_is_stream_copied(ctx: Context, make_media: MakeMedia,
                                             tmp_path: Path) -> None:
    src = _video(make_media, tmp_path / "ok.mp4", "640x360", 30, 2.0)
    job = upto(ctx, make_job(ctx, src), "encode")
    assert job.results.encode.video_path == "stream-copy"
    mp4 = ctx.workspace.abs(job.files["encoded_video"])
    assert _video_facts(mp4) == ("h264", 640, 360, 30.0, "aac")


def test_video_intro_plays_over_the_artwork(ctx: Context, make_media: MakeMedia,
                                            tmp_path: Path) -> None:
    add_artwork(ctx)
    _bumper(make_media, ctx.workspace.assets / "intro.wav", 2.0, -10)
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/intro.wav"}])
    src = _video(make_media, tmp_path / "v.mp4", "640x360", 25, 3.0)
    job = upto(ctx, make_job(ctx, src), "encode")
    mp4 = ctx.workspace.abs(job.files["encoded_video"])
    assert job.results.encode.video_path == "re-encode (bumpers)"
    with av.open(str(mp4)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        v_len = float(v.duration * v.time_base)
        a_len = float(a.duration * a.time_base)
        first = next(c.decode(v)).to_ndarray(format="rgb24")
    assert v_len == pytest.approx(2.0 + 3.0 - 0.5, abs=0.1)
    assert a_len == pytest.approx(v_len, abs=0.1)
    # artwork letterboxed into 640x360: black bars left and right, picture in the middle
    assert first.shape == (360, 640, 3)
    assert first[:, :100].mean() < 5 and first[:, 200:440].mean() > 20


def test_video_bumper_clip_is_used_for_its_picture(ctx: Context, make_media: MakeMedia,
                                                   tmp_path: Path) -> None:
    """An outro given as a video plays its own picture (red here), with its sound matched."""
    make_media(ctx.workspace.assets / "outro.mp4", "-f", "lavfi", "-i",
               "color=red:s=320x180:r=25:d=1.5", "-f", "lavfi", "-i",
               "sine=frequency=500:sample_rate=48000:duration=1.5", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-c:a", "aac")
    ctx = with_settings(ctx, shows=[{**SHOW, "outro": "assets/outro.mp4"}])
    src = _video(make_media, tmp_path / "v.mp4", "640x360", 25, 3.0)
    job = upto(ctx, make_job(ctx, src), "encode")
    assert job.timeline.intro_s == 0.0  # no intro
    mp4 = ctx.workspace.abs(job.files["encoded_video"])
    with av.open(str(mp4)) as c:
        frames = list(c.decode(c.streams.video[0]))
    last = frames[-1].to_ndarray(format="rgb24")
    assert last.shape == (360, 640, 3)
    r, g, b = (last[..., i].mean() for i in range(3))
    assert r > 150 and g < 60 and b < 60
    assert len(frames) / 25 == pytest.approx(3.0 + 1.5 - 0.5, abs=0.1)
    whole = ebur128(ctx.ffmpeg, mp4)
    assert abs(whole["i"] + 16) <= 1 and whole["tp"] <= -1
