"""ID3v2 tags for the MP3 deliverable: what podcast apps show, plus chapters (CHAP/CTOC).

Written with mutagen as ID3v2.3, which every podcast app and car stereo reads (v2.4 is not
universally supported). Cover art is converted to a baseline JPEG of at most 1400 px, the size
podcast apps expect in-file; a multi-megabyte PNG in every episode wastes listeners' data.
mutagen orders frames by size, which put CHAP frames out of time order (chp0, chp2, CTOC,
chp1...) and made ffprobe and eyeD3 list chapters wrongly; `_TimeOrderedID3` writes the table
of contents first and the chapters in time order.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mutagen.id3 import (
    APIC,
    CHAP,
    COMM,
    CTOC,
    ID3,
    TALB,
    TCON,
    TDRC,
    TIT2,
    TPE1,
    TPE2,
    TPOS,
    TRCK,
    CTOCFlags,
)
from mutagen.id3._tags import save_frame
from PIL import Image

from pipeline.models import ChapterMark

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tags:
    title: str
    show: str
    author: str = ""
    description: str = ""
    year: int | None = None
    season: int | None = None
    episode: int | None = None
    cover: Path | None = None
    chapters: list[ChapterMark] = field(default_factory=list)


def cover_jpeg(path: Path, max_px: int = 1400) -> bytes:
    """The artwork as a JPEG of at most `max_px` a side (callers check its size first)."""
    with Image.open(path) as im:
        im.draft("RGB", (max_px, max_px))  # a JPEG decodes at a reduced scale: less memory
        im = im.convert("RGB")
        if max(im.size) > max_px:
            im.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=90, optimize=True)
        return out.getvalue()


class _TimeOrderedID3(ID3):
    """ID3 that writes text frames first, then CTOC, CHAP in time order, pictures last."""

    def _write(self, config: object) -> bytearray:
        frames = list(self.values())
        chapters = sorted((f for f in frames if f.FrameID == "CHAP"),
                          key=lambda f: (f.start_time, f.element_id))
        toc = [f for f in frames if f.FrameID == "CTOC"]
        pictures = [f for f in frames if f.FrameID == "APIC"]
        rest = [f for f in frames if f.FrameID not in ("CHAP", "CTOC", "APIC")]
        ordered = [*rest, *toc, *chapters, *pictures]
        return bytearray().join(save_frame(f, config=config) for f in ordered)


def write_tags(mp3: Path, tags: Tags) -> None:
    """Replace any tags in `mp3` with ours (the file is still at its temporary path)."""
    id3 = _TimeOrderedID3()
    id3.add(TIT2(encoding=3, text=[tags.title]))
    id3.add(TALB(encoding=3, text=[tags.show]))
    if tags.author:
        id3.add(TPE1(encoding=3, text=[tags.author]))
        id3.add(TPE2(encoding=3, text=[tags.author]))
    id3.add(TCON(encoding=3, text=["Podcast"]))
    if tags.year:
        id3.add(TDRC(encoding=3, text=[str(tags.year)]))
    if tags.episode:
        id3.add(TRCK(encoding=3, text=[str(tags.episode)]))
    if tags.season:
        id3.add(TPOS(encoding=3, text=[str(tags.season)]))
    if tags.description:
        id3.add(COMM(encoding=3, lang="eng", desc="", text=[tags.description]))
    if tags.cover is not None:
        id3.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="Cover",
                     data=cover_jpeg(tags.cover)))
    if tags.chapters:
        ids = [f"chp{i}" for i in range(len(tags.chapters))]
        listed = [cid for cid, mark in zip(ids, tags.chapters, strict=True) if mark.toc]
        id3.add(CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                     child_element_ids=listed,
                     sub_frames=[TIT2(encoding=3, text=["Chapters"])]))
        for cid, mark in zip(ids, tags.chapters, strict=True):
            id3.add(CHAP(element_id=cid, start_time=round(mark.start * 1000),
                         end_time=round(mark.end * 1000), start_offset=0xFFFFFFFF,
                         end_offset=0xFFFFFFFF,
                         sub_frames=[TIT2(encoding=3, text=[mark.title])]))
    id3.save(mp3, v2_version=3)
