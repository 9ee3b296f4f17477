"""Soundbites and audiograms in the feeds: `podcast:soundbite` per clip, the audiogram as the
video feed's enclosure of an audio-only episode and as an `alternateEnclosure` beside the MP3
— checked with XPath, the project's validator and the parsers apps use."""

from __future__ import annotations

import io

import feedparser
import podcastparser
from lxml import etree

from pipeline.artifacts import Artifact
from pipeline.feeds.build import FeedSpec, build_feed, feed_episodes
from pipeline.feeds.guid import podcast_guid
from pipeline.feeds.podcast2 import PODCAST_NS
from pipeline.feeds.validate import validate_feed
from pipeline.models import AudiogramResult, Job, SoundbiteResult
from tests.feeds.fixtures import BASE, NOW, SHOWS, _obj, fixture_job

NS = {"podcast": PODCAST_NS, "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd"}
SHOW = SHOWS["audio-only"]


def _episode() -> Job:
    job = fixture_job("audio-only", 1, "Discovery calls that work", duration=300.0)
    objects = {**job.objects, Artifact.AUDIOGRAM: _obj(
        f"media/audio-only/{job.slug}.audiogram.mp4", 9_000_000, "video/mp4")}
    return job.replace(objects=objects).with_results(
        soundbites=[SoundbiteResult(start=42.5, duration=28.25, title="Ask, then listen",
                                    origin="transcript"),
                    SoundbiteResult(start=181.0, duration=15.0, title="Anchors & <offers>",
                                    origin="sidecar")],
        audiogram=AudiogramResult(width=1280, height=720, fps=15, caption_px=48,
                                  smallest_caption_px=48, frames=4500),
        timeline=job.timeline.with_durations(audiogram=305.4))


def _feed(kind: str) -> tuple[bytes, Job]:
    job = _episode()
    url = f"{BASE}/feeds/audio-only/{'podcast' if kind == 'audio' else 'video'}.xml"
    episodes = feed_episodes([job], kind, SHOW, NOW)  # type: ignore[arg-type]
    spec = FeedSpec(show=SHOW, kind=kind, url=url, guid=podcast_guid(url),  # type: ignore[arg-type]
                    artwork_url=f"{BASE}/shows/audio-only/artwork.png", episodes=tuple(episodes))
    return build_feed(spec), job


def test_soundbites_and_the_audiogram_in_the_audio_feed() -> None:
    xml, job = _feed("audio")
    item = etree.fromstring(xml).find("channel/item")
    bites = item.findall(f"{{{PODCAST_NS}}}soundbite")
    assert [(b.get("startTime"), b.get("duration"), b.text) for b in bites] == [
        ("42.500", "28.250", "Ask, then listen"), ("181.000", "15.000", "Anchors & <offers>")]
    alternates = item.findall(f"{{{PODCAST_NS}}}alternateEnclosure")
    assert [(a.get("type"), a.get("default"), a.get("height")) for a in alternates] == [
        ("audio/mpeg", "true", None), ("video/mp4", None, "720")]
    assert alternates[1].find(f"{{{PODCAST_NS}}}source").get("uri") == \
        job.objects[Artifact.AUDIOGRAM].url
    assert item.find("enclosure").get("type") == "audio/mpeg"
    assert validate_feed(xml, expected_lengths={job.objects[Artifact.AUDIO].url: job.objects[
        Artifact.AUDIO].size}) == []


def test_the_audiogram_is_the_video_feeds_enclosure() -> None:
    xml, job = _feed("video")
    audiogram = job.objects[Artifact.AUDIOGRAM]
    root = etree.fromstring(xml)
    (enclosure,) = root.xpath("channel/item/enclosure")
    assert (enclosure.get("url"), enclosure.get("type"), enclosure.get("length")) == (
        audiogram.url, "video/mp4", str(audiogram.size))
    assert root.xpath("string(channel/item/itunes:duration)", namespaces=NS) == "305"
    assert root.xpath("channel/item/podcast:alternateEnclosure/@default",
                      namespaces=NS) == ["true"]
    assert validate_feed(xml, expected_lengths={audiogram.url: audiogram.size}) == []
    parsed = podcastparser.parse("https://x/video.xml", io.BytesIO(xml))
    (episode,) = parsed["episodes"]
    assert episode["enclosures"][0]["url"] == audiogram.url
    assert episode["enclosures"][0]["mime_type"] == "video/mp4"
    fp = feedparser.parse(xml)
    assert not fp.bozo and fp.entries[0].enclosures[0]["href"] == audiogram.url


def test_an_episode_without_an_audiogram_is_not_in_the_video_feed() -> None:
    job = fixture_job("audio-only", 2, "Plain audio")
    assert feed_episodes([job], "video", SHOW, NOW) == []
    assert feed_episodes([_episode()], "video", SHOW, NOW) != []
