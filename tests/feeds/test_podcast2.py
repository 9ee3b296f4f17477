"""The Podcasting 2.0 extension and the podcast:guid, asserted with XPath on built feeds."""

from __future__ import annotations

import uuid

import pytest
from feedgen.feed import FeedGenerator
from lxml import etree

from pipeline.feeds import podcast2
from pipeline.feeds.build import build_feed
from pipeline.feeds.guid import PODCAST_GUID_NAMESPACE, podcast_guid
from tests.feeds.fixtures import fixture_spec

NS = {"podcast": podcast2.PODCAST_NS, "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd"}


@pytest.mark.parametrize("url", ["podnews.net/rss", "https://podnews.net/rss",
                                 "http://podnews.net/rss/", "https://podnews.net/rss//"])
def test_podcast_guid_spec_vector(url: str) -> None:
    assert podcast_guid(url) == "9b024349-ccf0-5f69-a609-6b82873eab3c"


def test_podcast_guid_is_uuid5_in_the_spec_namespace() -> None:
    guid = uuid.UUID(podcast_guid("https://media.example.com/feeds/a/podcast.xml"))
    assert guid.version == 5
    assert guid == uuid.uuid5(PODCAST_GUID_NAMESPACE, "media.example.com/feeds/a/podcast.xml")
    assert podcast_guid("https://example.com/a.xml") != podcast_guid("https://example.com/b.xml")


def _root(show: str, kind: str = "audio") -> etree._Element:
    return etree.fromstring(build_feed(fixture_spec(show, kind)))  # type: ignore[arg-type]


def test_extension_registered_under_its_own_name_with_podcast_prefix() -> None:
    fg = FeedGenerator()
    fg.load_extension("podcast")  # feedgen's iTunes extension keeps the name `podcast`
    fg.register_extension(podcast2.EXTENSION_NAME, podcast2.Podcast2Extension,
                          podcast2.Podcast2EntryExtension)
    assert isinstance(fg.podcast2, podcast2.Podcast2Extension)
    root = _root("audio-only")
    assert root.nsmap["podcast"] == "https://podcastindex.org/namespace/1.0"


def test_channel_tags() -> None:
    root = _root("audio-only")
    spec = fixture_spec("audio-only")
    assert root.xpath("string(channel/podcast:guid)", namespaces=NS) == podcast_guid(spec.url)
    (locked,) = root.xpath("channel/podcast:locked", namespaces=NS)
    assert (locked.text, locked.get("owner")) == ("no", "enablement@example.com")
    assert root.xpath("string(channel/podcast:medium)", namespaces=NS) == "podcast"
    (person,) = root.xpath("channel/podcast:person", namespaces=NS)
    assert (person.text, person.get("role"), person.get("group"), person.get("href")) == (
        "Dana Lee", "host", "cast", "https://example.com/dana")
    assert root.xpath("string(channel/itunes:explicit)", namespaces=NS) == "false"
    assert root.xpath("channel/itunes:category/@text", namespaces=NS) == ["Business"]
    assert root.xpath("channel/itunes:category/itunes:category/@text",
                      namespaces=NS) == ["Careers"]
    internal = _root("video")
    assert internal.xpath("string(channel/podcast:locked)", namespaces=NS) == "yes"
    assert internal.xpath("string(channel/itunes:block)", namespaces=NS) == "Yes"
    assert _root("course").xpath("string(channel/podcast:medium)", namespaces=NS) == "course"
    assert _root("video", "video").xpath("string(channel/podcast:medium)",
                                         namespaces=NS) == "video"


def test_transcripts_srt_html_then_vtt_last() -> None:
    for item in _root("audio-only").xpath("channel/item"):
        transcripts = item.xpath("podcast:transcript", namespaces=NS)
        assert [(t.get("type"), t.get("rel")) for t in transcripts] == [
            ("application/x-subrip", None), ("text/html", None), ("text/vtt", "captions")]
        assert all(t.get("url").startswith("https://") for t in transcripts)
        assert all(t.get("language") == "en" for t in transcripts)


def test_chapters_and_explicit_per_item() -> None:
    items = _root("audio-only").xpath("channel/item")
    assert [i.findtext("title") for i in items] == ["Negotiation: anchors 🎯",
                                                    "Discovery calls that work"]
    assert not items[0].xpath("podcast:chapters", namespaces=NS)
    (chapters,) = items[1].xpath("podcast:chapters", namespaces=NS)
    assert chapters.get("type") == "application/json+chapters"
    assert chapters.get("url").endswith("/chapters.json")
    assert [i.xpath("string(itunes:explicit)", namespaces=NS) for i in items] == ["true",
                                                                                  "false"]


def test_alternate_enclosures_link_audio_and_video() -> None:
    item = _root("video", "video").xpath("channel/item")[0]
    alts = item.xpath("podcast:alternateEnclosure", namespaces=NS)
    assert [(a.get("type"), a.get("default"), a.get("height")) for a in alts] == [
        ("video/mp4", "true", "1080"), ("audio/mpeg", None, None)]
    assert alts[0].xpath("string(podcast:source/@uri)", namespaces=NS) == \
        item.find("enclosure").get("url")
    assert alts[0].get("length") == item.find("enclosure").get("length")
