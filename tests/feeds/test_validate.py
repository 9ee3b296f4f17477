"""The Apple-requirements validator: a valid feed passes; each missing or invalid field is
rejected with a message that names the field and what to do."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from pipeline.errors import PipelineError
from pipeline.feeds.build import build_feed
from pipeline.feeds.validate import (
    FeedValidationError,
    check_artwork,
    feed_warnings,
    validate_feed,
)
from tests.feeds.fixtures import fixture_spec
from tests.feeds.plugin import make_artwork

IT = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"
Mutation = Callable[[etree._Element], None]


def _valid(show: str = "audio-only") -> etree._Element:
    return etree.fromstring(build_feed(fixture_spec(show)))


def _remove(path: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        elem = root.find(path)
        assert elem is not None, path
        elem.getparent().remove(elem)
    return mutate


def _set_text(path: str, text: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        root.find(path).text = text
    return mutate


def _set_attr(path: str, name: str, value: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        root.find(path).set(name, value)
    return mutate


def _duplicate_enclosure(root: etree._Element) -> None:
    items = root.findall("channel/item")
    items[1].find("enclosure").set("url", items[0].find("enclosure").get("url"))


def _duplicate_guid(root: etree._Element) -> None:
    items = root.findall("channel/item")
    items[1].find("guid").text = items[0].find("guid").text


CASES: list[tuple[str, Mutation, str]] = [
    ("title", _remove("channel/title"), "channel: <title> is missing; set [[shows]] title"),
    ("description", _remove("channel/description"), "channel: <description> is missing"),
    ("long description", _set_text("channel/description", "é" * 2001),
     "channel: <description> is 4002 bytes; Apple allows at most 4000"),
    ("language", _remove("channel/language"), "channel: <language> is missing"),
    ("image", _remove(f"channel/{IT}image"), "channel: <itunes:image> is missing"),
    ("image type", _set_attr(f"channel/{IT}image", "href", "https://x.example/a.gif"),
     "must end in .jpg or .png"),
    ("category", _remove(f"channel/{IT}category"), "channel: <itunes:category> is missing"),
    ("old category", _set_attr(f"channel/{IT}category", "text", "Literature"),
     "category 'Literature' is not one of Apple's categories"),
    ("subcategory", _set_attr(f"channel/{IT}category/{IT}category", "text", "Design"),
     "subcategory 'Design' is not an Apple subcategory of 'Business'"),
    ("explicit missing", _remove(f"channel/{IT}explicit"),
     "channel: <itunes:explicit> is missing; Apple requires true or false"),
    ("explicit yes", _set_text(f"channel/{IT}explicit", "yes"),
     "channel: <itunes:explicit> is 'yes'; Apple requires true or false"),
    ("item title", _remove("channel/item/title"), "item 1: <title> is missing"),
    ("enclosure", _remove("channel/item/enclosure"), "<enclosure> is missing"),
    ("enclosure url", _set_attr("channel/item/enclosure", "url", "media/x.mp3"),
     "is not an absolute http(s) URL"),
    ("enclosure non-ascii", _set_attr("channel/item/enclosure", "url",
                                      "https://x.example/é pisode.mp3"),
     "has spaces or non-ASCII characters"),
    ("enclosure length", _set_attr("channel/item/enclosure", "length", "0"),
     "enclosure length '0' must be the file's size in bytes"),
    ("enclosure type", _set_attr("channel/item/enclosure", "type", "audio/ogg"),
     "enclosure type 'audio/ogg' is not one Apple accepts"),
    ("unique enclosures", _duplicate_enclosure, "is also used by item 1"),
    ("guid", _remove("channel/item/guid"), "<guid> is missing"),
    ("guid permalink", _set_attr("channel/item/guid", "isPermaLink", "true"),
     "<guid> must carry isPermaLink=\"false\""),
    ("unique guid", _duplicate_guid, "repeats item 1's"),
    ("pubDate", _remove("channel/item/pubDate"), "<pubDate> is missing"),
    ("pubDate format", _set_text("channel/item/pubDate", "2026-03-09 09:00"),
     "is not an RFC 2822 date"),
    ("duration", _set_text(f"channel/item/{IT}duration", "10:05"),
     "<itunes:duration> '10:05'; it must be whole seconds"),
    ("duration missing", _remove(f"channel/item/{IT}duration"),
     "<itunes:duration> is missing"),
]


def test_valid_feeds_pass(tmp_path: Path) -> None:
    art = make_artwork(tmp_path / "art.png", (3000, 3000))
    for show in ("audio-only", "video", "course"):
        assert validate_feed(build_feed(fixture_spec(show)), artwork=art) == []
    assert validate_feed(build_feed(fixture_spec("video", "video"))) == []


@pytest.mark.parametrize(("mutate", "message"), [(m, msg) for _, m, msg in CASES],
                         ids=[name for name, _, _ in CASES])
def test_each_problem_is_rejected_with_a_clear_message(mutate: Mutation, message: str) -> None:
    root = _valid()
    mutate(root)
    problems = validate_feed(etree.tostring(root))
    assert problems, "the broken feed was accepted"
    assert any(message in p for p in problems), problems


def test_serial_show_needs_episode_numbers() -> None:
    root = _valid("course")
    item = root.findall("channel/item")[1]
    item.remove(item.find(f"{IT}episode"))
    (problem,) = validate_feed(etree.tostring(root))
    assert problem.startswith("item 2 ('Session 2: Tools'): <itunes:episode> is missing; "
                              "serial shows need an episode number")


def test_enclosure_length_must_match_the_stored_object() -> None:
    xml = build_feed(fixture_spec("audio-only"))
    url = etree.fromstring(xml).find("channel/item/enclosure").get("url")
    (problem,) = validate_feed(xml, expected_lengths={url: 123})
    assert "does not match the stored object (123 bytes)" in problem


def test_all_problems_reported_at_once() -> None:
    root = _valid()
    for mutate in (_remove("channel/title"), _remove("channel/language"),
                   _set_text(f"channel/{IT}explicit", "clean")):
        mutate(root)
    problems = validate_feed(etree.tostring(root))
    assert len(problems) == 3
    err = FeedValidationError("podcast.xml", problems)
    assert isinstance(err, PipelineError)
    assert str(err).count("\n  - ") == 3


@pytest.mark.parametrize(("size", "mode", "fmt", "message"), [
    ((1400, 1400), "RGB", "JPEG", None),
    ((3000, 3000), "RGB", "PNG", None),
    ((1200, 1200), "RGB", "PNG", "is 1200x1200 px; Apple requires 1400–3000 px"),
    ((3200, 3200), "RGB", "PNG", "is 3200x3200 px; Apple requires 1400–3000 px"),
    ((1600, 1400), "RGB", "PNG", "Apple requires a square image"),
    ((1400, 1400), "CMYK", "JPEG", "uses colour mode CMYK; Apple requires RGB"),
    ((1400, 1400), "RGBA", "PNG", "uses colour mode RGBA; Apple requires RGB"),
    ((1400, 1400), "P", "GIF", "is GIF; Apple accepts only JPEG or PNG"),
])
def test_artwork_file_checks(tmp_path: Path, size: tuple[int, int], mode: str, fmt: str,
                             message: str | None) -> None:
    art = make_artwork(tmp_path / f"art.{fmt.lower()}", size, mode, fmt)
    problems = check_artwork(art)
    if message is None:
        assert problems == []
    else:
        assert any(message in p for p in problems), problems


def test_artwork_missing_or_not_an_image(tmp_path: Path) -> None:
    assert "does not exist" in check_artwork(tmp_path / "none.png")[0]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert "is not a readable image" in check_artwork(bad)[0]


def test_locked_without_an_owner_is_a_warning_not_a_refusal() -> None:
    spec = fixture_spec("video")
    assert feed_warnings(build_feed(spec)) == []  # locked, owner_email set
    anonymous = dataclasses.replace(spec, show=spec.show.model_copy(update={"owner_email": ""}))
    xml = build_feed(anonymous)
    assert validate_feed(xml) == []
    [warning] = feed_warnings(xml)
    assert "podcast:locked has no owner" in warning and "owner_email" in warning
