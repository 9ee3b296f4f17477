"""Encode: MP3 tags/cover/chapters, bumpers, MP4 (H.264/AAC, faststart, ≤1080p)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from pipeline.errors import PipelineError
from pipeline.sidecar import EpisodeMetadata
from pipeline.stages import encode, normalise, trim
from pipeline.workspace import Context
from tests.conftest import MakeMedia
from tests.stages.finishing import add_artwork, duration, ebur128, make_job, with_settings

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


def test_mp3_tags_cover_and_chapters_follow_trim_and_intro(
        ctx: Context, make_media: MakeMedia, tmp_path: Path) -> None:
    add_artwork(ctx)
    intro = _bumper(make_media, ctx.workspace.assets / "intro.wav", 3.0, -6)
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/intro.wav"}])
    meta = EpisodeMetadata(title="Onboarding basics", season=2, episode=7,
                           description="How we onboard.",
                           chapters=[{"start": 2.0, "title": "Welcome"},
                                     {"start": "00:06", "title": "Your first week"}])
    src = _speechlike(make_media, tmp_path / "talk.wav", 12.0, head=2.0)
    job = make_job(ctx, src, metadata=meta)
    job = encode.run(normalise.run(trim.run(job, ctx), ctx), ctx)

    trim_start = job.measurements["trim"]["start_s"]
    assert trim_start == pytest.approx(1.7, abs=0.05)
    offset = job.measurements["content_offset_s"]
    assert offset == pytest.approx(3.0 - 0.5, abs=0.01)
    assert duration(intro) == pytest.approx(3.0, abs=0.01)

    mp3 = ctx.workspace.abs(job.files["audio"])
    tags = ID3(mp3)
    assert tags.version[:2] == (2, 3)
    assert str(tags["TIT2"]) == "Onboarding basics"
    assert str(tags["TALB"]) == "Learning Weekly"
    assert str(tags["TPE1"]) == "L&D Team"
    assert str(tags["TRCK"]) == "7" and str(tags["TPOS"]) == "2"
    assert str(tags["TDRC"]) == str(job.created_at.year)
    cover = tags.getall("APIC")[0]
    assert cover.mime == "image/jpeg" and cover.data[:2] == b"\xff\xd8" and cover.type == 3
    toc = tags.getall("CTOC")[0]
    assert toc.child_element_ids == ["chp0", "chp1"]
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [str(c.sub_frames["TIT2"]) for c in chaps] == ["Welcome", "Your first week"]
    # original 2.0 s / 6.0 s → minus the trimmed head, plus the intro (less the crossfade)
    expected = [offset + 2.0 - trim_start, offset + 6.0 - trim_start]
    assert [c.start_time / 1000 for c in chaps] == [pytest.approx(t, abs=0.002)
                                                     for t in expected]
    assert chaps[0].end_time == chaps[1].start_time
    assert chaps[1].end_time == pytest.approx(MP3(mp3).info.length * 1000, abs=60)


def test_bumpers_are_loudness_matched_and_crossfaded(ctx: Context, make_media: MakeMedia,
                                                      tmp_path: Path) -> None:
    _bumper(make_media, ctx.workspace.assets / "intro.mp3", 3.0, 0)  # far too loud
    _bumper(make_media, ctx.workspace.assets / "outro.ogg", 2.5, -30)  # far too quiet
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/intro.mp3",
                                     "outro": "assets/outro.ogg"}])
    src = _speechlike(make_media, tmp_path / "talk.wav", 8.0)
    job = encode.run(normalise.run(make_job(ctx, src), ctx), ctx)
    mp3 = ctx.workspace.abs(job.files["audio"])
    total = MP3(mp3).info.length
    assert total == pytest.approx(3.0 + 8.0 + 2.5 - 2 * 0.5, abs=0.1)
    assert job.measurements["encode"]["bumpers"] == ["intro", "outro"]
    assert job.measurements["content_offset_s"] == pytest.approx(2.5, abs=0.05)
    # each part sits at the episode's level (re-measured independently)
    assert _segment_loudness(ctx.ffmpeg, mp3, 0.2, 2.0) == pytest.approx(-16, abs=1.5)
    assert _segment_loudness(ctx.ffmpeg, mp3, 4.0, 4.0) == pytest.approx(-16, abs=1.5)
    assert _segment_loudness(ctx.ffmpeg, mp3, total - 1.8, 1.6) == pytest.approx(-16, abs=1.5)
    whole = ebur128(ctx.ffmpeg, mp3)
    assert abs(whole["i"] + 16) <= 1 and whole["tp"] <= -1


def test_missing_bumper_is_a_clear_error(ctx: Context, make_media: MakeMedia,
                                         tmp_path: Path) -> None:
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/nope.wav"}])
    job = normalise.run(make_job(ctx, _speechlike(make_media, tmp_path / "t.wav")), ctx)
    with pytest.raises(PipelineError, match=r"intro 'assets/nope.wav' does not exist"):
        encode.run(job, ctx)


def _video(make_media: MakeMedia, path: Path, size: str, fps: int, seconds: float) -> Path:
    return make_media(path, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:"
                      f"duration={seconds}", "-f", "lavfi", "-i",
                      f"aevalsrc='0.2*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))':s=48000:"
                      f"d={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                      "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2")


def _atoms(path: Path) -> list[str]:
    names, data = [], path.read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        names.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        pos += size
    return names


def _video_facts(path: Path) -> tuple[str, int, int, float, str]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return (v.codec_context.name, v.width, v.height, float(v.average_rate),
                c.streams.audio[0].codec_context.name)


def test_larger_video_is_downscaled_to_1080p(ctx: Context, make_media: MakeMedia,
                                             tmp_path: Path) -> None:
    src = _video(make_media, tmp_path / "big.mp4", "2560x1440", 12, 1.5)
    job = make_job(ctx, src)
    job = encode.run(normalise.run(trim.run(job, ctx), ctx), ctx)
    mp4 = ctx.workspace.abs(job.files["video"])
    assert _video_facts(mp4) == ("h264", 1920, 1080, 12.0, "aac")
    atoms = _atoms(mp4)
    assert atoms.index("moov") < atoms.index("mdat")  # +faststart
    assert job.files["audio"].endswith(".mp3")  # a video also feeds the audio podcast
    assert ctx.workspace.abs(job.files["audio"]).is_file()


def test_h264_within_limits_is_stream_copied(ctx: Context, make_media: MakeMedia,
                                             tmp_path: Path) -> None:
    src = _video(make_media, tmp_path / "ok.mp4", "640x360", 30, 2.0)
    job = encode.run(normalise.run(trim.run(make_job(ctx, src), ctx), ctx), ctx)
    assert job.measurements["encode"]["video_path"] == "stream-copy"
    mp4 = ctx.workspace.abs(job.files["video"])
    assert _video_facts(mp4) == ("h264", 640, 360, 30.0, "aac")
    assert _atoms(mp4).index("moov") < _atoms(mp4).index("mdat")


def test_video_intro_plays_over_the_artwork(ctx: Context, make_media: MakeMedia,
                                            tmp_path: Path) -> None:
    add_artwork(ctx)
    _bumper(make_media, ctx.workspace.assets / "intro.wav", 2.0, -10)
    ctx = with_settings(ctx, shows=[{**SHOW, "intro": "assets/intro.wav"}])
    src = _video(make_media, tmp_path / "v.mp4", "640x360", 25, 3.0)
    job = encode.run(normalise.run(make_job(ctx, src), ctx), ctx)
    mp4 = ctx.workspace.abs(job.files["video"])
    assert job.measurements["encode"]["video_path"] == "re-encode (bumpers)"
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
    job = encode.run(normalise.run(make_job(ctx, src), ctx), ctx)
    assert job.measurements["content_offset_s"] == 0.0  # no intro
    mp4 = ctx.workspace.abs(job.files["video"])
    with av.open(str(mp4)) as c:
        frames = list(c.decode(c.streams.video[0]))
    last = frames[-1].to_ndarray(format="rgb24")
    assert last.shape == (360, 640, 3)
    r, g, b = (last[..., i].mean() for i in range(3))
    assert r > 150 and g < 60 and b < 60
    assert len(frames) / 25 == pytest.approx(3.0 + 1.5 - 0.5, abs=0.1)
    whole = ebur128(ctx.ffmpeg, mp4)
    assert abs(whole["i"] + 16) <= 1 and whole["tp"] <= -1
