"""Stage "audiogram": audio-only episodes of shows with audiograms on get an MP4 (chapters,
cover, loudness verified) and square videos of their soundbites; video episodes and shows
without audiograms get none. Re-measured from the files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts import SOUNDBITE_VIDEOS, SOUNDBITES, Artifact
from pipeline.config import ShowSettings
from pipeline.review.cues import parse_vtt
from pipeline.runner import call_stage
from pipeline.stages import audiogram
from pipeline.video.audiogram import layout_for
from pipeline.workspace import Context
from tests.conftest import MakeMedia
from tests.stages.finishing import (
    add_artwork,
    duration,
    ebur128,
    make_job,
    upto,
    with_settings,
)
from tests.stages.highlights import speech_episode
from tests.video.frames import frames_at, streams, text_pixels

SHOW = {"id": "learning-weekly", "title": "Learning Weekly", "author": "L&D Team"}
CHAPTERS = [{"start": 0, "title": "Harvard sentences"}, {"start": 36.3, "title": "Ask not"},
            {"start": 48, "title": "Formal review"}]


def test_show_setting_auto_follows_the_video_medium() -> None:
    assert ShowSettings(**SHOW).makes_audiograms is False
    assert ShowSettings(**SHOW, medium="video").makes_audiograms is True
    assert ShowSettings(**SHOW, medium="video", audiogram=False).makes_audiograms is False
    assert ShowSettings(**SHOW, audiogram=True).makes_audiograms is True


@pytest.mark.slow
def test_an_audio_episode_gets_an_audiogram_and_square_soundbite_videos(
        ctx: Context, shared_audio: Path, tmp_path: Path) -> None:
    add_artwork(ctx)
    on = with_settings(ctx, shows=[{**SHOW, "audiogram": True}], audiogram={"fps": 10},
                       soundbites={"count": 2})
    job = speech_episode(on, shared_audio, tmp_path, metadata={"chapters": CHAPTERS},
                         last="package")
    out = call_stage(audiogram, job, on)

    path = on.workspace.abs(out.files[Artifact.AUDIOGRAM])
    info = streams(path)
    assert (info["video_codec"], info["pix_fmt"], info["width"], info["height"],
            info["audio_codec"], info["rate"]) == ("h264", "yuv420p", 1280, 720, "aac", 48000)
    mp3 = on.workspace.abs(job.files[Artifact.AUDIO])
    assert info["duration"] == pytest.approx(duration(mp3), abs=0.15)
    assert info["attached_pic"]
    marks = job.results.chapters or []
    assert [t for _, t in info["chapters"]] == [m.title for m in marks]
    assert [s for s, _ in info["chapters"]] == pytest.approx([m.start for m in marks],
                                                              abs=0.002)
    got = ebur128(on.ffmpeg, path)
    assert abs(got["i"] - ebur128(on.ffmpeg, mp3)["i"]) <= 0.5 and got["tp"] <= -1.0
    record = out.results.audiogram
    assert record is not None and record.height == 720 and record.caption_px == 48
    assert out.timeline.duration(Artifact.AUDIOGRAM) == pytest.approx(
        job.timeline.duration(Artifact.AUDIO))
    # captions are burned in when their cue is up (the VTT's first cue)
    cues = parse_vtt(on.workspace.abs(job.files[Artifact.VTT]).read_text())
    mid = (cues[0].start + cues[0].end) / 2
    frame = frames_at(path, [mid])[mid]
    assert text_pixels(layout_for(1280, 720).captions.crop(frame)) > 1000

    bites = job.results.soundbites or []
    assert len(bites) == 2
    for source, target, _bite in zip(SOUNDBITES, SOUNDBITE_VIDEOS, bites, strict=False):
        square = streams(on.workspace.abs(out.files[target]))
        assert (square["width"], square["height"]) == (720, 720)
        assert square["duration"] == pytest.approx(
            duration(on.workspace.abs(job.files[source])), abs=0.15)
        assert square["chapters"] == []
    assert record.soundbite_videos == 2


def test_video_episodes_and_shows_without_audiograms_get_none(ctx: Context,
                                                              make_media: MakeMedia) -> None:
    video = make_media(ctx.workspace.root / "v.mp4", "-f", "lavfi", "-i",
                       "testsrc2=size=320x180:rate=25:d=3", "-f", "lavfi", "-i",
                       "sine=frequency=300:duration=3", "-c:v", "libx264", "-preset",
                       "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest")
    on = with_settings(ctx, shows=[{**SHOW, "audiogram": True}])
    job = upto(on, make_job(on, video), "encode")
    job = job.with_file(Artifact.AUDIOGRAM, "work/stale.mp4")
    out = call_stage(audiogram, job, on)
    assert Artifact.AUDIOGRAM not in out.files and out.results.audiogram is None
