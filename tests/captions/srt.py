"""A strict SubRip parser for tests: any deviation from the format is an error."""

from __future__ import annotations

import re
from dataclasses import dataclass

TIME = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
TIMING = re.compile(rf"^{TIME} --> {TIME}$")


@dataclass(frozen=True)
class SrtCue:
    index: int
    start: float
    end: float
    lines: list[str]


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[SrtCue]:
    """Numbered from 1 without gaps, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text, one blank line."""
    if text.startswith("\ufeff") or "\r" in text:
        raise ValueError("BOM or CR line endings")
    if not text.endswith("\n") or text.endswith("\n\n\n"):
        raise ValueError("file must end with exactly one blank line after the last cue")
    cues: list[SrtCue] = []
    for n, block in enumerate(text.rstrip("\n").split("\n\n"), 1):
        lines = block.split("\n")
        if len(lines) < 3:
            raise ValueError(f"cue {n}: needs index, timing and text, got {lines!r}")
        if lines[0] != str(n):
            raise ValueError(f"cue {n}: index {lines[0]!r}, expected {n}")
        match = TIMING.match(lines[1])
        if not match:
            raise ValueError(f"cue {n}: bad timing line {lines[1]!r}")
        start, end = _seconds(*match.groups()[:4]), _seconds(*match.groups()[4:])
        if end <= start:
            raise ValueError(f"cue {n}: ends before it starts")
        if cues and start < cues[-1].end:
            raise ValueError(f"cue {n}: overlaps cue {n - 1}")
        if any(not line.strip() for line in lines[2:]):
            raise ValueError(f"cue {n}: empty text line")
        cues.append(SrtCue(n, start, end, lines[2:]))
    return cues
