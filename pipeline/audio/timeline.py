"""Map times of the original recording onto the finished deliverables.

Producers give chapter times against the recording they dropped. Trim removes the head (and,
optionally, the middle of long pauses) and encode may put an intro in front, so a time in the
original moves: `deliverable = content_offset + (time in the trimmed content)`.
"""

from __future__ import annotations

from typing import Any


def kept_segments(trim: dict[str, Any] | None) -> list[tuple[float, float]]:
    """The [start, end) stretches of the original that trim kept (whole file if no trim)."""
    if not trim:
        return []
    bounds = [float(trim["start_s"])]
    for a, b in trim.get("removed_pauses", []):
        bounds += [float(a), float(b)]
    bounds.append(float(trim["end_s"]))
    return list(zip(bounds[::2], bounds[1::2], strict=True))


def to_content(t: float, trim: dict[str, Any] | None) -> float:
    """Original-recording time → time in the trimmed content (cut stretches collapse)."""
    segments = kept_segments(trim)
    if not segments:
        return t
    elapsed = 0.0
    for a, b in segments:
        if t < a:
            return elapsed
        if t < b:
            return elapsed + (t - a)
        elapsed += b - a
    return elapsed


def to_deliverable(t: float, measurements: dict[str, Any]) -> float:
    """Original-recording time → time in the MP3/MP4 (after trim and any intro)."""
    offset = float(measurements.get("content_offset_s", 0.0))
    return offset + to_content(t, measurements.get("trim"))
