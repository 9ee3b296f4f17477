"""Feeds built from the state database, published through the real local storage backend, and
read back by real podcast clients' parsers (gPodder's podcastparser, feedparser)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from urllib.parse import urlparse

import feedparser
import podcastparser
import pytest
from lxml import etree

from pipeline.feeds.guid import podcast_guid
from pipeline.feeds.podcast2 import PODCAST_NS
from pipeline.feeds.publish import (
    PublishError,
    publish_all,
    publish_due,
    publish_show,
    shows_due,
)
from pipeline.models import Status
from pipeline.state import StateDB
from pipeline.storage import open_storage
from pipeline.workspace import Context
from tests.feeds.plugin import AddEpisode

NS = {"podcast": PODCAST_NS, "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd"}


def _key(ctx: Context, url: str) -> str:
    base = ctx.settings.storage.public_base_url.rstrip("/")
    assert url.startswith(base + "/"), url
    return url[len(base) + 1:]


def _stored_bytes(ctx: Context, url: str) -> bytes:
    """Fetch what a URL in the feed serves, through the storage backend's folder."""
    path = ctx.workspace.public / _key(ctx, url)
    assert path.is_file(), f"{url} is not in storage"
    return path.read_bytes()


def _parse(ctx: Context, url: str) -> tuple[dict, feedparser.FeedParserDict, etree._Element]:
    data = _stored_bytes(ctx, url)
    pp = podcastparser.parse(url, io.BytesIO(data))
    fp = feedparser.parse(data)
    assert not fp.bozo, fp.get("bozo_exception")
    return pp, fp, etree.fromstring(data)


def test_app_sees_episodes_newest_first_with_stored_enclosures(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    jobs = [add_episode(f"Episode {n}", show="weekly", seconds=1.0 + n) for n in range(1, 4)]
    add_episode("Still in review", show="weekly", status=Status.AWAITING_REVIEW)
    results = publish_show(shows_ctx, "weekly")
    assert [(r.kind, r.items, r.uploaded) for r in results] == [("audio", 3, True)]
    pp, fp, root = _parse(shows_ctx, results[0].url)

    assert [e["title"] for e in pp["episodes"]] == ["Episode 3", "Episode 2", "Episode 1"]
    assert [e.title for e in fp.entries] == ["Episode 3", "Episode 2", "Episode 1"]
    storage = open_storage(shows_ctx.workspace)
    for episode, job in zip(pp["episodes"], reversed(jobs), strict=True):
        (enc,) = episode["enclosures"]
        stored = storage.stat(job.objects["audio"].key)
        assert stored is not None
        assert enc["url"] == storage.url(stored.key)
        assert enc["file_size"] == stored.size
        assert enc["mime_type"] == "audio/mpeg"
        assert episode["total_time"] == round(job.probe.duration_s)
        assert episode["guid"] == f"learncast:{job.id}"
        # every transcript URL the feed names is an object in storage
        for t in root.xpath(f"//item[guid='learncast:{job.id}']/podcast:transcript",
                            namespaces=NS):
            assert _stored_bytes(shows_ctx, t.get("url"))
    assert pp["cover_url"].startswith(shows_ctx.settings.storage.public_base_url)
    assert _stored_bytes(shows_ctx, pp["cover_url"])[:4] == b"\x89PNG"
    assert fp.feed.image.href == pp["cover_url"]
    assert root.xpath("string(channel/podcast:guid)", namespaces=NS) == \
        podcast_guid(results[0].url)
    # the local copy is what was uploaded
    assert results[0].path == shows_ctx.workspace.feeds / "weekly" / "podcast.xml"
    assert results[0].path.read_bytes() == _stored_bytes(shows_ctx, results[0].url)


def test_publish_is_idempotent_and_guids_are_stable(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    add_episode("One", show="weekly")
    first = publish_all(shows_ctx)
    assert all(r.uploaded for r in first)
    stored = shows_ctx.workspace.public / first[0].key
    before = (stored.read_bytes(), stored.stat().st_mtime_ns)
    again = publish_all(shows_ctx)
    assert [r.uploaded for r in again] == [False] * len(first)
    assert (stored.read_bytes(), stored.stat().st_mtime_ns) == before
    add_episode("Two", show="weekly")
    third = publish_show(shows_ctx, "weekly")
    assert third[0].uploaded and third[0].items == 2
    pp = podcastparser.parse(third[0].url, io.BytesIO(stored.read_bytes()))
    guids = {e["title"]: e["guid"] for e in pp["episodes"]}
    old = podcastparser.parse(first[0].url, io.BytesIO(before[0]))
    assert guids["One"] == old["episodes"][0]["guid"]


def test_podcast_guid_kept_when_the_feed_url_changes(
        make_ctx, shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    add_episode("One", show="weekly")
    (first,) = publish_show(shows_ctx, "weekly")
    moved = make_ctx(shows=[s.model_dump() for s in shows_ctx.settings.shows],
                     storage={"public_base_url": "https://learn.example.com/podcasts"})
    (second,) = publish_show(moved, "weekly")
    assert second.url.startswith("https://learn.example.com/podcasts/")
    root = etree.fromstring(second.path.read_bytes())
    assert root.xpath("string(channel/podcast:guid)", namespaces=NS) == podcast_guid(first.url)
    assert root.xpath("string(channel/atom:link[@rel='self']/@href)",
                      namespaces={"atom": "http://www.w3.org/2005/Atom"}) == second.url


def test_video_feed_with_alternate_enclosures(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    audio_only = add_episode("Audio only", show="weekly")
    both = add_episode("Screen recording", show="weekly", video=True)
    results = {r.kind: r for r in publish_show(shows_ctx, "weekly")}
    assert results["audio"].items == 2 and results["video"].items == 1
    assert results["video"].path.name == "video.xml"
    pp, _fp, root = _parse(shows_ctx, results["video"].url)
    (episode,) = pp["episodes"]
    (enc,) = episode["enclosures"]
    assert enc["mime_type"] == "video/mp4"
    assert enc["file_size"] == both.objects["video"].size
    assert root.xpath("string(channel/podcast:medium)", namespaces=NS) == "video"
    alts = root.xpath("channel/item/podcast:alternateEnclosure", namespaces=NS)
    assert [(a.get("type"), a.get("default")) for a in alts] == [("video/mp4", "true"),
                                                                  ("audio/mpeg", None)]
    assert alts[1].xpath("string(podcast:source/@uri)", namespaces=NS) == \
        both.objects["audio"].url
    assert alts[0].get("height") == "120"
    assert alts[0].xpath("string(podcast:integrity/@value)", namespaces=NS).startswith(
        "sha256-")
    _, _, audio_root = _parse(shows_ctx, results["audio"].url)
    items = audio_root.xpath("channel/item", namespaces=NS)
    assert len(items[0].xpath("podcast:alternateEnclosure", namespaces=NS)) == 2
    assert not items[1].xpath("podcast:alternateEnclosure", namespaces=NS)
    assert items[1].findtext("title") == audio_only.title


def test_serial_course_is_oldest_first_by_episode_number(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    add_episode("Session 2", show="course", episode=2)
    add_episode("Session 1", show="course", episode=1)
    add_episode("Session 3", show="course", episode=3)
    (result,) = publish_show(shows_ctx, "course")
    pp, _fp, root = _parse(shows_ctx, result.url)
    # the feed lists sessions in course order (apps order serial shows oldest first by date)
    assert root.xpath("channel/item/title/text()") == ["Session 1", "Session 2", "Session 3"]
    assert sorted((e["number"], e["title"]) for e in pp["episodes"]) == [
        (1, "Session 1"), (2, "Session 2"), (3, "Session 3")]
    assert pp["type"] == "serial"
    assert root.xpath("string(channel/podcast:medium)", namespaces=NS) == "course"


def test_internal_show_is_blocked_locked_and_unguessable(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    add_episode("Quarterly goals", show="internal")
    (first,) = publish_show(shows_ctx, "internal")
    folder = Path(urlparse(first.url).path).parent.name
    assert folder.startswith("internal-") and len(folder) == len("internal-") + 32
    (second,) = publish_show(shows_ctx, "internal")
    assert second.url == first.url  # the token is kept
    _, _, root = _parse(shows_ctx, first.url)
    assert root.xpath("string(channel/itunes:block)", namespaces=NS) == "Yes"
    assert root.xpath("string(channel/podcast:locked)", namespaces=NS) == "yes"
    (public,) = publish_show(shows_ctx, "weekly")
    _, _, proot = _parse(shows_ctx, public.url)
    assert proot.xpath("string(channel/podcast:locked)", namespaces=NS) == "no"
    assert not proot.xpath("channel/itunes:block", namespaces=NS)
    assert public.key == "feeds/weekly/podcast.xml"


def test_future_episode_appears_once_its_time_has_come(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    add_episode("Out now", show="weekly")
    add_episode("Next week", show="weekly",
                publish_date=(now + dt.timedelta(days=7)).isoformat())
    (result,) = publish_show(shows_ctx, "weekly", now=now)
    assert result.items == 1
    assert shows_due(shows_ctx, now=now + dt.timedelta(days=1)) == []
    later = now + dt.timedelta(days=8)
    assert shows_due(shows_ctx, now=later) == ["weekly"]
    (republished,) = publish_due(shows_ctx, now=later)
    assert republished.items == 2 and republished.uploaded
    pp, _, _ = _parse(shows_ctx, republished.url)
    assert [e["title"] for e in pp["episodes"]] == ["Next week", "Out now"]
    assert shows_due(shows_ctx, now=later) == []


def test_special_characters_round_trip(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    title = "Q&A <script>alert(1)</script> 🎧 مرحبا بالعالم"
    description = "Tom & Jerry's \"guide\" <b>bold</b> 🚀 — שלום"
    add_episode(title, show="weekly", description=description)
    (result,) = publish_show(shows_ctx, "weekly")
    raw = _stored_bytes(shows_ctx, result.url)
    assert b"<script>" not in raw  # escaped, never live markup
    pp, fp, root = _parse(shows_ctx, result.url)
    assert root.findtext("channel/item/title") == title
    assert root.findtext("channel/item/description") == description
    assert pp["episodes"][0]["title"] == title
    # feedparser hands the title to the app as plain text, exactly as written
    assert fp.entries[0].title == title
    assert fp.entries[0].title_detail.type == "text/plain"
    assert "Tom & Jerry" in fp.entries[0].summary
    assert "🚀 — שלום" in fp.entries[0].summary


def test_one_broken_show_does_not_block_the_others(
        shows_ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    add_episode("Fine", show="weekly")
    add_episode("Session without a number", show="course")
    with pytest.raises(PublishError) as info:
        publish_all(shows_ctx)
    assert list(info.value.failures) == ["course"]
    assert "<itunes:episode> is missing; serial shows need an episode number" in str(info.value)
    assert sorted(r.show for r in info.value.results) == ["internal", "weekly"]
    assert (shows_ctx.workspace.public / "feeds/weekly/podcast.xml").is_file()
    assert not (shows_ctx.workspace.public / "feeds/course").exists()
    assert not (shows_ctx.workspace.public / "shows/course").exists()  # not even its artwork

