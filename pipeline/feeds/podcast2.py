"""A feedgen extension for the Podcasting 2.0 namespace (feedgen 1.0 ships none).

feedgen's own iTunes extension is registered under the name `podcast`, so this one is
registered as `podcast2` (`fg.podcast2.guid(...)`, `fe.podcast2.transcript(...)`) while the XML
it writes uses the conventional prefix `podcast` bound to the namespace
https://podcastindex.org/namespace/1.0 — the prefix apps look for in practice.

Only the tags Learncast publishes are implemented: channel `guid`, `locked`, `medium`,
`person`; item `transcript`, `chapters`, `soundbite`, `alternateEnclosure` (with `source` and
`integrity`). Values are plain data set by the builder; the extension only renders them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from lxml import etree

PODCAST_NS = "https://podcastindex.org/namespace/1.0"
EXTENSION_NAME = "podcast2"

#: `podcast:transcript` types in the order they are written. Several apps (and parsers such as
#: podcastparser) keep only the last transcript tag, so the captions file (VTT) goes last.
TRANSCRIPT_ORDER = ("application/x-subrip", "text/html", "text/plain", "application/json",
                    "text/vtt")


def _tag(name: str) -> str:
    return f"{{{PODCAST_NS}}}{name}"


def _sub(parent: Any, name: str, text: str | None = None, **attrs: str) -> Any:
    elem = etree.SubElement(parent, _tag(name), {k: v for k, v in attrs.items() if v})
    if text is not None:
        elem.text = text
    return elem


@dataclass(frozen=True)
class Person:
    name: str
    role: str = "host"
    group: str = "cast"
    href: str = ""
    img: str = ""


@dataclass(frozen=True)
class Transcript:
    url: str
    type: str
    language: str = ""
    rel: str = ""


@dataclass(frozen=True)
class Soundbite:
    """A stretch of the episode's media worth sharing (`podcast:soundbite`): seconds into the
    enclosure, and a title (at most 128 characters, per the namespace)."""

    start: float
    duration: float
    title: str = ""


@dataclass(frozen=True)
class AlternateEnclosure:
    """One rendition of an episode (the MP3, the MP4) for `podcast:alternateEnclosure`."""

    url: str
    type: str
    length: int
    default: bool = False
    title: str = ""
    height: int | None = None
    sha256: str | None = None


class Podcast2Extension(BaseExtension):
    """Channel-level Podcasting 2.0 tags."""

    def __init__(self) -> None:
        self._guid: str | None = None
        self._locked: tuple[bool, str] | None = None
        self._medium: str | None = None
        self._persons: list[Person] = []

    def extend_ns(self) -> dict[str, str]:
        return {"podcast": PODCAST_NS}

    def guid(self, value: str) -> None:
        self._guid = value

    def locked(self, value: bool, owner: str = "") -> None:
        self._locked = (value, owner)

    def medium(self, value: str) -> None:
        self._medium = value

    def person(self, person: Person) -> None:
        self._persons.append(person)

    def extend_rss(self, rss_feed: Any) -> Any:
        channel = rss_feed[0]
        if self._guid:
            _sub(channel, "guid", self._guid)
        if self._locked is not None:
            locked, owner = self._locked
            _sub(channel, "locked", "yes" if locked else "no", owner=owner)
        if self._medium:
            _sub(channel, "medium", self._medium)
        for p in self._persons:
            _sub(channel, "person", p.name, role=p.role, group=p.group, href=p.href, img=p.img)
        return rss_feed


class Podcast2EntryExtension(BaseEntryExtension):
    """Item-level Podcasting 2.0 tags."""

    def __init__(self) -> None:
        self._transcripts: list[Transcript] = []
        self._chapters: str | None = None
        self._soundbites: list[Soundbite] = []
        self._alternates: list[AlternateEnclosure] = []

    def extend_ns(self) -> dict[str, str]:
        return {"podcast": PODCAST_NS}

    def transcript(self, transcript: Transcript) -> None:
        self._transcripts.append(transcript)

    def chapters(self, url: str) -> None:
        self._chapters = url

    def soundbite(self, soundbite: Soundbite) -> None:
        self._soundbites.append(soundbite)

    def alternate_enclosure(self, alternate: AlternateEnclosure) -> None:
        self._alternates.append(alternate)

    def extend_rss(self, entry: Any) -> Any:
        def rank(t: Transcript) -> int:
            return TRANSCRIPT_ORDER.index(t.type) if t.type in TRANSCRIPT_ORDER else -1

        for t in sorted(self._transcripts, key=rank):
            _sub(entry, "transcript", url=t.url, type=t.type, language=t.language, rel=t.rel)
        if self._chapters:
            _sub(entry, "chapters", url=self._chapters, type="application/json+chapters")
        for bite in self._soundbites:
            _sub(entry, "soundbite", bite.title[:128] or None, startTime=f"{bite.start:.3f}",
                 duration=f"{bite.duration:.3f}")
        for alt in self._alternates:
            elem = _sub(entry, "alternateEnclosure", type=alt.type, length=str(alt.length),
                        title=alt.title, height=str(alt.height) if alt.height else "",
                        default="true" if alt.default else "")
            _sub(elem, "source", uri=alt.url, contentType=alt.type)
            if alt.sha256:
                digest = base64.b64encode(bytes.fromhex(alt.sha256)).decode("ascii")
                _sub(elem, "integrity", type="sri", value=f"sha256-{digest}")
        return entry

