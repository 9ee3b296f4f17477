"""Package: the published MP3 and MP4 carry tags, cover art, the same chapters in time order,
and (MP4) the captions as an in-file track — checked by reading the files back."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from pipeline.sidecar import EpisodeMetadata
from pipeline.workspace import Context
from tests.conftest import MakeMedia
from tests.stages.finishing import add_artwork, duration, make_job, upto, with_settings

SHOW = {"id": "learning-weekly", "title": "Learning Weekly", "author": "L&D Team"}
CHAPTERS = [{"start": 2.0, "title": "Welcome"}, {"start": "00:04", "title": "Your first week"},
            {"start": 6.5, "title": "Questions = answers; #3"}, {"start": 9, "title": "Wrap"}]


def _speechlike(make_media: MakeMedia, path: Path, seconds: float, *, head: float,
                video: bool = False) -> Path:
    expr = (f"0.2*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))*gte(t,{head})"
            "+0.001*(random(0)-0.5)")
    audio = ["-f", "lavfi", "-i", f"aevalsrc='{expr}':s=48000:d={seconds}", "-ac", "2"]
    if not video:
        return make_media(path, *audio)
    return make_media(path, "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:d={seconds}",
                      *audio, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                      "-c:a", "aac")


def _chapters(path: Path) -> list[tuple[float, str]]:
    """Chapters as ffmpeg's demuxers read them, in the order the file stores them."""
    with av.open(str(path)) as c:
        return [(round(float(ch["start"] * ch["time_base"]), 3), ch["metadata"].get("title", ""))
                for ch in c.chapters()]


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


@pytest.fixture
def intro_ctx(ctx: Context, make_media: MakeMedia) -> Context:
    add_artwork(ctx)
    make_media(ctx.workspace.assets / "intro.wav", "-f", "lavfi", "-i",
               "sine=frequency=660:sample_rate=44100:duration=3", "-af", "volume=-6dB",
               "-ac", "2")
    return with_settings(ctx, shows=[{**SHOW, "intro": "assets/intro.wav"}])


def test_mp3_tags_cover_and_chapters_in_time_order(intro_ctx: Context, make_media: MakeMedia,
                                                   tmp_path: Path) -> None:
    ctx = intro_ctx
    meta = EpisodeMetadata(title="Onboarding basics", season=2, episode=7,
                           description="How we onboard.", chapters=CHAPTERS)
    job = upto(ctx, make_job(ctx, _speechlike(make_media, tmp_path / "t.wav", 12.0, head=2.0),
                             metadata=meta), "package")
    timeline = job.timeline
    assert timeline.kept[0][0] == pytest.approx(1.7, abs=0.05)  # 2 s head, 0.3 s padding
    assert timeline.intro_s == pytest.approx(3.0 - 0.5, abs=0.01)

    mp3 = ctx.workspace.abs(job.files["audio"])
    tags = ID3(mp3)
    assert tags.version[:2] == (2, 3)
    assert str(tags["TIT2"]) == "Onboarding basics"
    assert str(tags["TALB"]) == "Learning Weekly" and str(tags["TPE1"]) == "L&D Team"
    assert str(tags["TRCK"]) == "7" and str(tags["TPOS"]) == "2"
    cover = tags.getall("APIC")[0]
    assert cover.mime == "image/jpeg" and cover.data[:2] == b"\xff\xd8" and cover.type == 3
    # an intro chapter (not in the table of contents), then the sidecar's, all mapped through
    # trim and intro; listed by ffmpeg in time order (mutagen alone stores them by size)
    expected = [0.0] + [round(timeline.to_deliverable(t), 3) for t in (2.0, 4.0, 6.5, 9.0)]
    assert [t for t, _ in _chapters(mp3)] == pytest.approx(expected, abs=0.002)
    assert [title for _, title in _chapters(mp3)] == [
        "Intro", "Welcome", "Your first week", "Questions = answers; #3", "Wrap"]
    assert tags.getall("CTOC")[0].child_element_ids == ["chp1", "chp2", "chp3", "chp4"]
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert all(a.end_time == b.start_time for a, b in itertools.pairwise(chaps))
    assert chaps[-1].end_time == pytest.approx(MP3(mp3).info.length * 1000, abs=60)
    # the JSON chapters say the same
    doc = json.loads(ctx.workspace.abs(job.files["chapters"]).read_text())
    assert [c["startTime"] for c in doc["chapters"]] == pytest.approx(expected, abs=0.001)


def test_mp4_carries_chapters_captions_and_cover(intro_ctx: Context, make_media: MakeMedia,
                                                 tmp_path: Path) -> None:
    ctx = intro_ctx
    src = _speechlike(make_media, tmp_path / "v.mp4", 12.0, head=2.0, video=True)
    job = make_job(ctx, src, metadata=EpisodeMetadata(title="Video", chapters=CHAPTERS))
    job = upto(ctx, job, "caption")
    vtt = ctx.workspace.abs(job.files["vtt"])
    vtt.write_text("WEBVTT\n\n00:00:03.000 --> 00:00:05.000\nFirst line\n\n"
                   "00:00:06.000 --> 00:00:07.500\nSecond → line\n", encoding="utf-8")
    job = upto(ctx, job, "package", first="package")
    mp4 = ctx.workspace.abs(job.files["video"])
    assert _chapters(mp4) == _chapters(ctx.workspace.abs(job.files["audio"]))
    atoms = _atoms(mp4)
    assert atoms.index("moov") < atoms.index("mdat")  # +faststart
    with av.open(str(mp4)) as c:
        assert c.metadata.get("title") == "Video"
        [sub] = c.streams.subtitles
        assert sub.codec_context.name == "mov_text" and sub.metadata.get("language") == "eng"
        cues = [(round(float(p.pts * p.time_base), 2), bytes(p)[2:].decode())
                for p in c.demux(sub) if p.size > 2]
        assert [s for s in c.streams.video
                if s.disposition & av.stream.Disposition.attached_pic]
        length = c.duration / av.time_base
    assert cues == [(3.0, "First line"), (6.0, "Second → line")]
    assert length == pytest.approx(duration(ctx.workspace.abs(job.files["encoded_video"])),
                                   abs=0.1)
