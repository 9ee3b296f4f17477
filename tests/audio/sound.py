"""Helpers for the sound tests: real speech inputs built with ffmpeg (the bench's builders,
shorter) and masters made by the library, re-measured with ffmpeg's ebur128 by the bench's
own reader (`bench.sound`), never by the pipeline code under test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.audio.loudness import PROFILES, Profile
from pipeline.audio.master import SoundOptions, make_master

MONO = PROFILES["apple-podcast-mono"]  # the generated inputs are mono
CEILING = MONO.true_peak - 1.0  # the default 1 dB of headroom


def master(ffmpeg: str, source: Path, dest: Path, *, profile: Profile = MONO,
           **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Make `dest` from `source` as the normalise stage does, with these sound options;
    returns the loudness figures (as the JSON `status --json` shows) and the sound report."""
    figures, report = make_master(ffmpeg, source, dest, profile, rate=44100, headroom_db=1.0,
                                  options=SoundOptions(**options))
    return figures.model_dump(mode="json"), report
