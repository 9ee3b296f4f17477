"""Audiograms, soundbites and suggested chapters end to end: a recording joined from shared
clips goes through `learncast run` on a show with audiograms on, and everything is re-measured
from what was published — the objects in storage and the feeds — not from the state."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import av
import feedparser
import podcastparser
import pytest
from lxml import etree
from mutagen.id3 import ID3

from bench.highlights import JOINS, make_join, match
from pipeline.feeds.podcast2 import PODCAST_NS
from pipeline.review.cues import parse_vtt
from pipeline.video.audiogram import layout_for
from tests.conftest import learncast
from tests.stages.finishing import duration, ebur128
from tests.video.frames import frames_at, streams, text_pixels

pytestmark = pytest.mark.slow


def _chapters_mp4(path: Path) -> list[tuple[float, str]]:
    with av.open(str(path)) as c:
        return [(round(float(ch["start"] * ch["time_base"]), 3), ch["metadata"]["title"])
                for ch in c.chapters()]


@pytest.mark.timeout(1200)
def test_an_audio_episode_publishes_audiogram_soundbites_and_suggested_chapters(
        workspace_dir: Path, ffmpeg: str, shared_audio: Path) -> None:
    config = workspace_dir / "config" / "learncast.toml"
    config.write_text(config.read_text().replace('audiogram = "auto"', "audiogram = true"))
    _, joins = make_join(workspace_dir / "inbox" / "joined.flac", JOINS["A (5 clips)"], ffmpeg)
    env = {"LEARNCAST_CHAPTERS__SUGGEST_MIN_DURATION_S": "60"}
    run = learncast(workspace_dir, "run", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    status = learncast(workspace_dir, "status", "--json")
    (ep,) = json.loads(status.stdout)
    assert ep["status"] == "published"
    public = workspace_dir / "public"

    def published(obj: dict) -> Path:  # type: ignore[type-arg]
        return public / obj["key"]

    # --- the contract in status --json ---
    files, objects, results = ep["files"], ep["objects"], ep["results"]
    assert files["audiogram"].endswith(".audiogram.mp4")
    assert isinstance(files["soundbites"], list) and 1 <= len(files["soundbites"]) <= 3
    assert len(files["soundbite_videos"]) == len(files["soundbites"])
    assert len(objects["soundbites"]) == len(results["soundbites"]) == len(files["soundbites"])
    listed = [m for m in results["chapters"] if m["toc"]]
    assert len(listed) >= 2 and all(m["suggested"] for m in listed)

    # --- suggested chapters: the same instants in the JSON, the MP3 and the audiogram ---
    marks = [(m["start"], m["title"]) for m in results["chapters"]]
    doc = json.loads(published(objects["chapters"]).read_text())
    assert [(c["startTime"], c["title"]) for c in doc["chapters"]] == marks
    id3 = ID3(published(objects["audio"]))
    assert [(f.start_time / 1000, str(f.sub_frames["TIT2"])) for f in id3.getall("CHAP")] \
        == marks
    audiogram = published(objects["audiogram"])
    assert _chapters_mp4(audiogram) == marks
    timeline = results["timeline"]
    head = timeline["kept"][0][0]
    found = [m["start"] - timeline["intro_s"] + head for m in listed[1:]]
    hits, precision, _recall = match(found, joins)
    assert hits >= 1 and precision >= 0.5, (found, joins)

    # --- the audiogram: the encode settings, the MP3's length and loudness, moving bars and
    # burned-in captions ---
    info = streams(audiogram)
    mp3 = published(objects["audio"])
    assert (info["video_codec"], info["pix_fmt"], info["width"], info["height"],
            info["audio_codec"], info["rate"]) == ("h264", "yuv420p", 1280, 720, "aac", 48000)
    assert info["duration"] == pytest.approx(duration(mp3), abs=0.15)
    loud, target = ebur128(ffmpeg, audiogram), results["loudness"]["target_i"]
    assert abs(loud["i"] - target) <= 1.0 and loud["tp"] <= -1.0, loud
    vtt = published(objects["vtt"]).read_text()
    cues = parse_vtt(vtt)
    cue = max(cues, key=lambda c: c.end - c.start)
    quiet = next(t for t in (90.0, 95.0, 100.0) if not any(c.start <= t < c.end for c in cues))
    times = [cue.start + 0.4, (cue.start + cue.end) / 2, cue.end - 0.3, quiet]
    frames = frames_at(audiogram, times)
    layout = layout_for(1280, 720)
    assert text_pixels(layout.captions.crop(frames[times[1]])) > 1000
    assert text_pixels(layout.captions.crop(frames[quiet])) < 50
    bars = [layout.bars.crop(frames[t]).astype(int) for t in times[:3]]
    assert max(abs(a - b).mean() for a, b in itertools.pairwise(bars)) > 1.0

    # --- soundbites: lengths, loudness, square videos, and where the feed says they are ---
    for bite, obj, video in zip(results["soundbites"], objects["soundbites"],
                                objects["soundbite_videos"], strict=True):
        clip = published(obj)
        assert 15.0 <= duration(clip) <= 60.5
        assert duration(clip) == pytest.approx(bite["duration"], abs=0.1)
        got = ebur128(ffmpeg, clip)
        assert abs(got["i"] - target) <= 1.0 and got["tp"] <= -1.0, (bite, got)
        square = streams(published(video))
        assert (square["width"], square["height"]) == (720, 720)
    feed = (public / "feeds" / "learning-weekly" / "podcast.xml").read_bytes()
    item = etree.fromstring(feed).find("channel/item")
    tags = item.findall(f"{{{PODCAST_NS}}}soundbite")
    assert [(float(t.get("startTime")), float(t.get("duration"))) for t in tags] == [
        (b["start"], b["duration"]) for b in results["soundbites"]]
    alternates = item.findall(f"{{{PODCAST_NS}}}alternateEnclosure")
    assert [a.get("type") for a in alternates] == ["audio/mpeg", "video/mp4"]
    video_feed = (public / "feeds" / "learning-weekly" / "video.xml").read_bytes()
    parsed = podcastparser.parse("http://localhost:8080/video.xml", io.BytesIO(video_feed))
    (episode,) = parsed["episodes"]
    assert episode["enclosures"][0]["url"] == objects["audiogram"]["url"]
    assert episode["enclosures"][0]["file_size"] == audiogram.stat().st_size
    assert not feedparser.parse(feed).bozo and not feedparser.parse(video_feed).bozo
