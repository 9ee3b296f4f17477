"""Chapters: one list in deliverable time, rendered as Podcasting 2.0 JSON chapters (1.2.0).

`chapter_marks` is the only place that turns the sidecar's chapters (recording time) into
chapters of the deliverables: through the episode's Timeline, after trim and any intro. The
JSON file here, the MP3's ID3 CHAP frames and the MP4's chapter track are all written from
its result, so they cannot disagree. Chapters that would start after the end of the episode,
or inside a stretch trim cut away next to another chapter, are dropped with a warning rather
than published pointing nowhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pipeline.artifacts import Timeline
from pipeline.asr.types import Word
from pipeline.models import ChapterMark
from pipeline.sidecar import Chapter
from pipeline.text.topics import UNIT_MAX_S, suggest
from pipeline.text.words import sentences

log = logging.getLogger(__name__)

CHAPTERS_VERSION = "1.2.0"
#: Two chapters closer than this in the deliverable are one (a cut removed what lay between).
_SAME_INSTANT_S = 0.5
#: A first chapter this close to the start begins at 0. MP4 chapter tracks (what QuickTime,
#: Apple Podcasts and LMS players read) always start at 0, so a first chapter at 0.3 s would be
#: at 0 there and at 0.3 s in the MP3 and the JSON; later in, a leading chapter covers the gap.
FIRST_AT_ZERO_S = 1.0


def chapter_marks(chapters: Sequence[Chapter], timeline: Timeline, duration_s: float, *,
                  opening: str = "Opening") -> list[ChapterMark]:
    """The sidecar's chapters placed in the deliverables, each ending where the next begins.

    The first chapter always starts at 0: an intro bumper gets its own "Intro" chapter, a
    first chapter within FIRST_AT_ZERO_S of the start is moved to 0, and a later one gets a
    leading `opening` chapter (not in the table of contents)."""
    starts: list[tuple[float, str]] = []
    for ch in chapters:
        start = round(timeline.to_deliverable(ch.start), 3)
        if start >= duration_s:
            log.warning("[chapters] chapter %r starts at %.1f s of the recording, after the "
                        "end of the episode (%.1f s); it is left out — fix its start in the "
                        "sidecar", ch.title, ch.start, duration_s)
            continue
        if starts and start - starts[-1][0] < _SAME_INSTANT_S:
            log.warning("[chapters] chapter %r starts at %.1f s, where trim cut the recording "
                        "so that it falls on chapter %r; it replaces it", ch.title, ch.start,
                        starts[-1][1])
            starts.pop()
        starts.append((start, ch.title))
    marks: list[ChapterMark] = []
    if starts and starts[0][0] > 0:
        if timeline.intro_s > 0:
            marks.append(ChapterMark(start=0.0, end=starts[0][0], title="Intro", toc=False))
        elif starts[0][0] < FIRST_AT_ZERO_S:
            starts[0] = (0.0, starts[0][1])
        else:
            marks.append(ChapterMark(start=0.0, end=starts[0][0], title=opening, toc=False))
    for i, (start, title) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration_s
        marks.append(ChapterMark(start=start, end=round(end, 3), title=title))
    return marks


def suggested_chapters(words: Sequence[Word], timeline: Timeline, *, min_chapter_s: float = 0.0,
                       window_s: float = 0.0) -> list[Chapter]:
    """Chapters at the transcript's topic shifts (`pipeline.text.topics`), as sidecar chapters
    are given: in recording time, so `chapter_marks` places them like any other."""
    topics = suggest(sentences(words, max_s=UNIT_MAX_S), timeline.content_duration_s,
                     min_chapter_s=min_chapter_s, window_s=window_s)
    out: list[Chapter] = []
    for topic in topics:
        start = round(timeline.content_to_recording(topic.start), 3)
        if out and start <= out[-1].start:
            continue
        out.append(Chapter(start=start, title=topic.title[:200]))
    return out


def mark_suggested(marks: Sequence[ChapterMark]) -> list[ChapterMark]:
    """The listed chapters flagged `suggested` (the intro and opening marks are structure)."""
    return [m.model_copy(update={"suggested": m.toc}) for m in marks]


def chapters_document(marks: Sequence[ChapterMark], *, title: str = "",
                      podcast_name: str = "") -> dict[str, Any]:
    """The JSON chapters document (a dict ready for `json.dumps`)."""
    items: list[dict[str, Any]] = []
    for m in marks:
        item: dict[str, Any] = {"startTime": m.start, "title": m.title}
        if not m.toc:
            item["toc"] = False
        items.append(item)
    doc: dict[str, Any] = {"version": CHAPTERS_VERSION, "chapters": items}
    if title:
        doc["title"] = title
    if podcast_name:
        doc["podcastName"] = podcast_name
    return doc


def render_chapters(marks: Sequence[ChapterMark], **kwargs: Any) -> str:
    return json.dumps(chapters_document(marks, **kwargs), ensure_ascii=False, indent=2) + "\n"
