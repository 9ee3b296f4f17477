"""Podcasting 2.0 JSON chapters (version 1.2.0) from the sidecar's chapter list.

Sidecar chapter times are relative to the recording's content; the published files may start
with an intro bumper, so every start is shifted by the encode stage's `content_offset_s`.
Chapters that would start after the end of the episode are dropped with a warning rather than
published pointing nowhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.fsutil import atomic_write_text
from pipeline.sidecar import Chapter

log = logging.getLogger(__name__)

CHAPTERS_VERSION = "1.2.0"
CHAPTERS_CONTENT_TYPE = "application/json+chapters"


def chapters_document(chapters: Sequence[Chapter], *, offset_s: float = 0.0,
                      duration_s: float | None = None, title: str = "",
                      podcast_name: str = "") -> dict[str, Any]:
    """The JSON chapters document (a dict ready for `json.dumps`)."""
    items: list[dict[str, Any]] = []
    for ch in chapters:
        start = round(ch.start + offset_s, 3)
        if duration_s is not None and start >= duration_s:
            log.warning("[chapters] chapter %r starts at %.1f s, after the end of the episode "
                        "(%.1f s); it is left out — fix its start in the sidecar", ch.title,
                        start, duration_s)
            continue
        items.append({"startTime": start, "title": ch.title})
    if offset_s > 0 and items and items[0]["startTime"] > 0:
        items.insert(0, {"startTime": 0, "title": "Intro", "toc": False})
    doc: dict[str, Any] = {"version": CHAPTERS_VERSION, "chapters": items}
    if title:
        doc["title"] = title
    if podcast_name:
        doc["podcastName"] = podcast_name
    return doc


def write_chapters(path: Path, chapters: Sequence[Chapter], **kwargs: Any) -> dict[str, Any]:
    doc = chapters_document(chapters, **kwargs)
    atomic_write_text(path, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    return doc
