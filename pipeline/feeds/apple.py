"""A small feedgen extension for the iTunes tags feedgen 1.0 writes the old way.

feedgen's iTunes extension accepts `itunes:explicit` only as yes/no/clean, while Apple documents
`true`/`false` today, and it checks `itunes:category` against the pre-2019 category list. This
extension writes both as Apple documents them now, plus `itunes:block` with Apple's spelling
(`Yes`); the builder leaves feedgen's versions unset.
"""

from __future__ import annotations

from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from lxml import etree

ITUNES_NS = "http://www.itunes.com/dtds/podcast-1.0.dtd"
EXTENSION_NAME = "apple"


def _explicit(parent: Any, value: bool | None) -> None:
    if value is not None:
        etree.SubElement(parent, f"{{{ITUNES_NS}}}explicit").text = "true" if value else "false"


class AppleExtension(BaseExtension):
    def __init__(self) -> None:
        self._explicit: bool | None = None
        self._category: tuple[str, str] | None = None
        self._block = False

    def extend_ns(self) -> dict[str, str]:
        return {"itunes": ITUNES_NS}

    def explicit(self, value: bool) -> None:
        self._explicit = value

    def category(self, category: str, subcategory: str = "") -> None:
        self._category = (category, subcategory)

    def block(self, value: bool) -> None:
        """Keep the show out of Apple's directory (and others that honour it)."""
        self._block = value

    def extend_rss(self, rss_feed: Any) -> Any:
        channel = rss_feed[0]
        if self._category:
            cat, sub = self._category
            elem = etree.SubElement(channel, f"{{{ITUNES_NS}}}category", text=cat)
            if sub:
                etree.SubElement(elem, f"{{{ITUNES_NS}}}category", text=sub)
        _explicit(channel, self._explicit)
        if self._block:
            etree.SubElement(channel, f"{{{ITUNES_NS}}}block").text = "Yes"
        return rss_feed


class AppleEntryExtension(BaseEntryExtension):
    def __init__(self) -> None:
        self._explicit: bool | None = None

    def extend_ns(self) -> dict[str, str]:
        return {"itunes": ITUNES_NS}

    def explicit(self, value: bool) -> None:
        self._explicit = value

    def extend_rss(self, entry: Any) -> Any:
        _explicit(entry, self._explicit)
        return entry
