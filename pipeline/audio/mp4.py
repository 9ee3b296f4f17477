"""The MP4 deliverable's extras: chapters, a caption track and cover art — a remux, no encode.

Players that only show what is inside the file (LMS players, QuickTime, car and TV apps) get
captions from a `mov_text` track (the WebVTT stays beside it for the feeds), chapters from the
chapter track written from the same ChapterMark list as the MP3's ID3 chapters and the JSON,
and the show artwork as an attached picture, as the MP3 has. Streams are copied, so packaging
a one-hour video takes seconds; `+faststart` puts the index first so playback starts before the
download ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av

from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path, atomic_write_text
from pipeline.media import run_ffmpeg
from pipeline.models import ChapterMark

#: ISO 639-2/B codes (what MP4 language fields hold) of languages L&D teams publish in most.
#: Anything else is written as `und` (undetermined), which players treat as unlabelled.
_ISO639_2 = {
    "ar": "ara", "cs": "cze", "da": "dan", "de": "ger", "el": "gre", "en": "eng", "es": "spa",
    "fi": "fin", "fr": "fre", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind", "it": "ita",
    "ja": "jpn", "ko": "kor", "nl": "dut", "no": "nor", "nb": "nob", "pl": "pol", "pt": "por",
    "ro": "rum", "ru": "rus", "sv": "swe", "th": "tha", "tr": "tur", "uk": "ukr", "vi": "vie",
    "zh": "chi",
}


def iso639_2(bcp47: str) -> str:
    return _ISO639_2.get(bcp47.split("-")[0].lower(), "und")


def _escape(value: str) -> str:
    """ffmetadata values escape `=`, `;`, `#`, `\\` and line breaks with a backslash."""
    out = value.replace("\\", "\\\\")
    for ch in "=;#":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\r", " ").replace("\n", " ")


def ffmetadata(chapters: Sequence[ChapterMark], duration_s: float) -> str:
    lines = [";FFMETADATA1"]
    for mark in chapters:
        if mark.start >= duration_s:
            continue
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(mark.start * 1000)}",
                  f"END={round(min(mark.end, duration_s) * 1000)}",
                  f"title={_escape(mark.title)}"]
    return "\n".join(lines) + "\n"


def package_mp4(ffmpeg: str, encoded: Path, dest: Path, *, work: Path,
                chapters: Sequence[ChapterMark], captions: Path | None, language: str,
                cover_jpeg: bytes | None, metadata: dict[str, str], duration_s: float) -> None:
    """Remux `encoded` into `dest` with chapters, the caption track, cover and metadata."""
    inputs = ["-i", str(encoded)]
    maps = ["-map", "0:v:0", "-map", "0:a:0"]
    extra: list[str] = []
    n = 1
    if captions is not None:
        inputs += ["-i", str(captions)]
        maps += ["-map", f"{n}:s:0"]
        extra += ["-c:s", "mov_text", "-metadata:s:s:0", f"language={iso639_2(language)}",
                  "-disposition:s:0", "0"]
        n += 1
    chapter_file = work / "chapters.ffmeta"
    atomic_write_text(chapter_file, ffmetadata(chapters, duration_s))
    inputs += ["-f", "ffmetadata", "-i", str(chapter_file)]
    extra += ["-map_chapters", str(n), "-map_metadata", str(n)]
    n += 1
    if cover_jpeg is not None:
        cover = work / "cover.jpg"
        cover.write_bytes(cover_jpeg)
        inputs += ["-i", str(cover)]
        maps += ["-map", f"{n}:v:0"]
        extra += ["-disposition:v:1", "attached_pic"]
    meta = [arg for key, value in metadata.items() if value
            for arg in ("-metadata", f"{key}={value}")]
    with atomic_path(dest) as tmp:
        run_ffmpeg(ffmpeg, [*inputs, *maps, "-c", "copy", *extra, *meta,
                            "-movflags", "+faststart", str(tmp)],
                   what=f"packaging {dest.name} (chapters, captions, cover)")
        _check(tmp, chapters=sum(m.start < duration_s for m in chapters),
               captions=captions is not None, duration_s=duration_s)


def _check(path: Path, *, chapters: int, captions: bool, duration_s: float) -> None:
    """The remux kept the media whole and added what it should (nothing is published if not)."""
    with av.open(str(path)) as c:
        found = len(c.chapters())
        subtitles = len(c.streams.subtitles)
        length = (c.duration or 0) / av.time_base
    if found != chapters or subtitles != int(captions) or length > duration_s + 0.5:
        raise PipelineError(f"packaging {path.name} produced {found} chapter(s), {subtitles} "
                            f"caption track(s) and {length:.2f} s (expected {chapters}, "
                            f"{int(captions)} and {duration_s:.2f} s); run `learncast retry` "
                            "and report this if it happens again")
