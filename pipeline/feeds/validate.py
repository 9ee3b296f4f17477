"""Apple Podcasts' feed requirements, checked before anything is published.

Apple rejects (or silently drops episodes of) feeds that miss these; podcast apps are more
forgiving but break in the same places. The checks run on the XML actually about to be uploaded,
plus the artwork file itself (Apple downloads and inspects it), and report every problem at
once, so one fix-and-rerun cycle is enough.
"""

from __future__ import annotations

import email.utils
import warnings
from collections.abc import Mapping
from pathlib import Path

from lxml import etree
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.feeds.apple import ITUNES_NS
from pipeline.feeds.categories import category_problem
from pipeline.feeds.podcast2 import PODCAST_NS
from pipeline.images import MAX_ARTWORK_PIXELS

MAX_DESCRIPTION_BYTES = 4000
ARTWORK_MIN_PX, ARTWORK_MAX_PX = 1400, 3000
#: Enclosure types Apple accepts.
ENCLOSURE_TYPES = ("audio/mpeg", "audio/x-m4a", "audio/mp4", "video/mp4", "video/quicktime",
                   "video/x-m4v", "application/pdf")
_IT = f"{{{ITUNES_NS}}}"


class FeedValidationError(PipelineError):
    """The feed would not pass Apple's checks; `problems` lists every one."""

    def __init__(self, feed: str, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"feed {feed} was not published; it does not meet Apple's podcast "
                         f"requirements:\n{listed}")


def check_artwork(path: Path) -> list[str]:
    """Apple's artwork rules, checked on the image file: JPEG or PNG, RGB, square,
    1400–3000 px a side."""
    where = f"artwork {path.name}"
    if not path.is_file():
        return [f"{where} does not exist; set [[shows]] artwork to a JPEG or PNG file in the "
                "workspace"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # lazy: the header only, no pixel is decoded
                fmt, mode, (w, h) = im.format, im.mode, im.size
    except Image.DecompressionBombError:
        return [f"{where} has more than {2 * MAX_ARTWORK_PIXELS:,} pixels; Apple "
                f"requires {ARTWORK_MIN_PX}–{ARTWORK_MAX_PX} px a side — resize it (3000x3000 "
                "is best)"]
    except (UnidentifiedImageError, OSError) as exc:
        return [f"{where} is not a readable image ({exc}); export it again as JPEG or PNG"]
    problems = []
    if fmt not in ("JPEG", "PNG"):
        problems.append(f"{where} is {fmt}; Apple accepts only JPEG or PNG — convert it")
    if mode != "RGB":
        problems.append(f"{where} uses colour mode {mode}; Apple requires RGB (no CMYK, "
                        "greyscale, palette or transparency) — save it as RGB")
    if w != h:
        problems.append(f"{where} is {w}x{h} px; Apple requires a square image — crop it")
    if not (min(w, h) >= ARTWORK_MIN_PX and max(w, h) <= ARTWORK_MAX_PX):
        problems.append(f"{where} is {w}x{h} px; Apple requires {ARTWORK_MIN_PX}–"
                        f"{ARTWORK_MAX_PX} px a side — resize it (3000x3000 is best)")
    return problems


def feed_warnings(xml: bytes) -> list[str]:
    """What does not block publishing but costs reach: said once per publish, in the log."""
    root = etree.fromstring(xml)
    warnings = []
    locked = root.find(f"channel/{{{PODCAST_NS}}}locked")
    if locked is not None and not locked.get("owner"):
        warnings.append("podcast:locked has no owner e-mail, so Podcast Index (and apps using "
                        "its parser) ignore the lock; set owner_email on the show")
    return warnings


def _text(parent: etree._Element, tag: str) -> str:
    elem = parent.find(tag)
    return (elem.text or "").strip() if elem is not None else ""


def validate_feed(xml: bytes, *, artwork: Path | None = None,
                  expected_lengths: Mapping[str, int] | None = None) -> list[str]:
    """Every Apple requirement the feed misses, as readable sentences (empty: all good).

    `artwork` is the local image file behind `itunes:image`; `expected_lengths` maps enclosure
    URLs to the byte sizes the storage backend reported, so a stale length is caught.
    """
    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as exc:
        return [f"the feed is not well-formed XML ({exc}); this is a Learncast bug, please "
                "report it"]
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        return ["the document is not an RSS 2.0 feed (<rss><channel> missing)"]
    problems: list[str] = []
    problems += _check_channel(channel, artwork)
    serial = _text(channel, f"{_IT}type") == "serial"
    seen_urls: dict[str, int] = {}
    seen_guids: dict[str, int] = {}
    for n, item in enumerate(channel.findall("item"), start=1):
        problems += _check_item(item, n, serial, seen_urls, seen_guids, expected_lengths or {})
    return problems


def _check_channel(channel: etree._Element, artwork: Path | None) -> list[str]:
    problems = []
    if not _text(channel, "title"):
        problems.append("channel: <title> is missing; set [[shows]] title")
    description = _text(channel, "description")
    if not description:
        problems.append("channel: <description> is missing; set [[shows]] description")
    elif len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
        problems.append(f"channel: <description> is {len(description.encode('utf-8'))} bytes; "
                        f"Apple allows at most {MAX_DESCRIPTION_BYTES} — shorten [[shows]] "
                        "description")
    if not _text(channel, "language"):
        problems.append("channel: <language> is missing; set [[shows]] language (e.g. en)")
    image = channel.find(f"{_IT}image")
    if image is None or not (image.get("href") or "").strip():
        problems.append("channel: <itunes:image> is missing; set [[shows]] artwork")
    elif not (image.get("href") or "").lower().endswith((".jpg", ".jpeg", ".png")):
        problems.append(f"channel: <itunes:image> {image.get('href')} must end in .jpg or .png")
    if artwork is not None:
        problems += [f"channel: {p}" for p in check_artwork(artwork)]
    category = channel.find(f"{_IT}category")
    if category is None or not category.get("text"):
        problems.append("channel: <itunes:category> is missing; set [[shows]] category to one "
                        "of Apple's categories")
    else:
        sub = category.find(f"{_IT}category")
        why = category_problem(category.get("text", ""),
                               sub.get("text", "") if sub is not None else "")
        if why:
            problems.append(f"channel: <itunes:category>: {why}")
    explicit = _text(channel, f"{_IT}explicit")
    if explicit not in ("true", "false"):
        shown = f"is {explicit!r}" if explicit else "is missing"
        problems.append(f"channel: <itunes:explicit> {shown}; Apple requires true or false "
                        "(set [[shows]] explicit)")
    return problems


def _check_item(item: etree._Element, n: int, serial: bool, seen_urls: dict[str, int],
                seen_guids: dict[str, int], expected: Mapping[str, int]) -> list[str]:
    title = _text(item, "title")
    where = f"item {n} ({title!r})" if title else f"item {n}"
    problems = []
    if not title:
        problems.append(f"{where}: <title> is missing; give the episode a title in its sidecar")
    description = _text(item, "description")
    if len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
        problems.append(f"{where}: <description> is {len(description.encode('utf-8'))} bytes; "
                        f"Apple allows at most {MAX_DESCRIPTION_BYTES} — shorten it")
    enclosure = item.find("enclosure")
    if enclosure is None:
        problems.append(f"{where}: <enclosure> is missing; the episode's media was not "
                        "uploaded — run the upload stage (learncast retry ID)")
    else:
        url = (enclosure.get("url") or "").strip()
        length = (enclosure.get("length") or "").strip()
        mime = (enclosure.get("type") or "").strip()
        if not url.startswith(("http://", "https://")):
            problems.append(f"{where}: enclosure url {url!r} is not an absolute http(s) URL; "
                            "set storage.public_base_url")
        elif not url.isascii() or " " in url:
            problems.append(f"{where}: enclosure url {url!r} has spaces or non-ASCII "
                            "characters, which Apple rejects")
        elif url in seen_urls:
            problems.append(f"{where}: enclosure url {url} is also used by item "
                            f"{seen_urls[url]}; every episode needs its own media file")
        else:
            seen_urls[url] = n
        if not length.isdigit() or int(length) <= 0:
            problems.append(f"{where}: enclosure length {length!r} must be the file's size in "
                            "bytes (a positive whole number)")
        elif url in expected and int(length) != expected[url]:
            problems.append(f"{where}: enclosure length {length} does not match the stored "
                            f"object ({expected[url]} bytes); upload the episode again")
        if mime not in ENCLOSURE_TYPES:
            problems.append(f"{where}: enclosure type {mime!r} is not one Apple accepts "
                            f"({', '.join(ENCLOSURE_TYPES)})")
    guid = item.find("guid")
    if guid is None or not (guid.text or "").strip():
        problems.append(f"{where}: <guid> is missing; every episode needs a stable guid")
    else:
        if guid.get("isPermaLink") != "false":
            problems.append(f"{where}: <guid> must carry isPermaLink=\"false\" (it is an id, "
                            "not a URL)")
        value = guid.text.strip()
        if value in seen_guids:
            problems.append(f"{where}: <guid> {value} repeats item {seen_guids[value]}'s")
        seen_guids.setdefault(value, n)
    pub = _text(item, "pubDate")
    if not pub:
        problems.append(f"{where}: <pubDate> is missing")
    else:
        try:
            parsed = email.utils.parsedate_to_datetime(pub)
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            problems.append(f"{where}: <pubDate> {pub!r} is not an RFC 2822 date with a time "
                            "zone (e.g. 'Mon, 02 Mar 2026 09:00:00 +0000')")
    duration = _text(item, f"{_IT}duration")
    if not duration.isdigit():
        shown = f"{duration!r}" if duration else "is missing"
        problems.append(f"{where}: <itunes:duration> {shown}; it must be whole seconds")
    episode = _text(item, f"{_IT}episode")
    if serial and not episode:
        problems.append(f"{where}: <itunes:episode> is missing; serial shows need an episode "
                        "number on every episode — add `episode: N` to its sidecar")
    elif episode and (not episode.isdigit() or int(episode) <= 0):
        problems.append(f"{where}: <itunes:episode> {episode!r} must be a positive number")
    return problems
