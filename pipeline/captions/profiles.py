"""Caption style profiles: the limits a caption file is segmented and checked against.

`hard` limits are violations (reported in the QA report); `warn` limits are advisory. Values
follow the published guides: Netflix English timed-text style guide (42 characters, 20 cps),
BBC subtitle guidelines (37 characters, 160–180 wpm), DCMP Captioning Key for educational
media (32 characters, about 130 wpm), and our own `learncast` default (42, 17 cps).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    max_chars_per_line: int = 42
    max_lines: int = 2
    max_cps: float | None = 17.0       # characters per second, hard
    warn_cps: float | None = 15.0
    max_wpm: float | None = None       # words per minute, hard
    warn_wpm: float | None = None
    min_duration_s: float = 0.83
    max_duration_s: float = 7.0
    min_gap_s: float = 0.083
    max_end_after_speech_s: float = 0.5


#: Profile registry (config `captions.profile`).
PROFILES: dict[str, Profile] = {
    "learncast": Profile("learncast"),
    "netflix-en": Profile("netflix-en", max_chars_per_line=42, max_cps=20.0, warn_cps=17.0),
    "bbc": Profile("bbc", max_chars_per_line=37, max_cps=None, warn_cps=None,
                   max_wpm=180.0, warn_wpm=160.0, min_duration_s=0.8),
    "dcmp-edu": Profile("dcmp-edu", max_chars_per_line=32, max_cps=None, warn_cps=None,
                        max_wpm=130.0, warn_wpm=120.0, min_duration_s=1.0, max_duration_s=6.0),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"captions.profile = {name!r} is unknown; use one of: "
                          f"{', '.join(PROFILES)}") from None
