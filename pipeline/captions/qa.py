"""Check cues against their profile and summarise what reviewers should look at.

Nothing the segmenter could not avoid is emitted silently: every hard-limit breach is a
violation with the cue number and the measured value, every soft limit a warning.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from typing import Any

from pipeline.asr.types import Segment, Word
from pipeline.captions.profiles import Profile
from pipeline.captions.segmenter import Cue

EPS = 1e-6
#: Whisper is unsure of the case of a decoder segment's first word ("drop" or "Drop"), rarely
#: of the word: such a word is flagged only below this share of the threshold.
SEGMENT_START_SHARE = 0.25
#: A misheard phrase runs on in confident words (the decoder continues what it misheard), so
#: a word is also flagged when it and its NEIGHBOURS either side average below the threshold.
NEIGHBOURS = 1


def cue_speed(cue: Cue) -> tuple[float, float]:
    """(characters per second, words per minute) as shown on screen."""
    seconds = max(cue.duration, 1e-3)
    return len(cue.text) / seconds, len(cue.text.split()) / seconds * 60


def speech_speed(cue: Cue, profile: Profile) -> tuple[float, float]:
    """(cps, wpm) if the cue stayed up for its whole speech plus the allowed linger."""
    if not cue.words:
        return cue_speed(cue)
    seconds = max(cue.words[-1].end - cue.words[0].start + profile.max_end_after_speech_s, 1e-3)
    return len(cue.text) / seconds, len(cue.words) / seconds * 60


def check_cues(cues: list[Cue], profile: Profile) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []

    def add(k: int, rule: str, value: float, limit: float, severity: str,
            **extra: Any) -> None:
        cue = cues[k]
        issues.append({"cue": k + 1, "start": round(cue.start, 3), "rule": rule,
                       "value": round(value, 3), "limit": limit, "severity": severity,
                       "text": cue.text, **extra})

    for k, cue in enumerate(cues):
        for line in cue.lines:
            if len(line) > profile.max_chars_per_line:
                add(k, "chars_per_line", len(line), profile.max_chars_per_line, "error")
        if len(cue.lines) > profile.max_lines:
            add(k, "lines", len(cue.lines), profile.max_lines, "error")
        cps, wpm = cue_speed(cue)
        # How fast the words were spoken: above the limit, no timing can fix it (only editing).
        spoken = speech_speed(cue, profile)
        if profile.max_cps and cps > profile.max_cps + EPS:
            add(k, "cps", cps, profile.max_cps, "error", speech_rate=round(spoken[0], 3),
                avoidable=spoken[0] <= profile.max_cps)
        elif profile.warn_cps and cps > profile.warn_cps + EPS:
            add(k, "cps", cps, profile.warn_cps, "warning")
        if profile.max_wpm and wpm > profile.max_wpm + EPS:
            add(k, "wpm", wpm, profile.max_wpm, "error", speech_rate=round(spoken[1], 3),
                avoidable=spoken[1] <= profile.max_wpm)
        elif profile.warn_wpm and wpm > profile.warn_wpm + EPS:
            add(k, "wpm", wpm, profile.warn_wpm, "warning")
        if cue.duration < profile.min_duration_s - EPS:
            add(k, "min_duration", cue.duration, profile.min_duration_s, "error")
        if cue.duration > profile.max_duration_s + EPS:
            add(k, "max_duration", cue.duration, profile.max_duration_s, "error")
        if cue.words and cue.end > cue.words[-1].end + profile.max_end_after_speech_s + EPS:
            add(k, "end_after_speech", cue.end - cue.words[-1].end,
                profile.max_end_after_speech_s, "error")
        if k + 1 < len(cues):
            gap = cues[k + 1].start - cue.end
            if gap < -EPS:
                add(k, "overlap", -gap, 0.0, "error")
            elif gap < profile.min_gap_s - EPS:
                add(k, "min_gap", gap, profile.min_gap_s, "error")
    return issues


def distribution(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"min": round(ordered[0], 2), "median": round(statistics.median(ordered), 2),
            "p90": pct(0.9), "max": round(ordered[-1], 2),
            "mean": round(statistics.fmean(ordered), 2)}


def segment_starts(segments: Sequence[Segment]) -> set[int]:
    """Indices, in the transcript's word list, of each decoder segment's first word."""
    starts, k = set(), 0
    for segment in segments:
        if segment.words:
            starts.add(k)
        k += len(segment.words)
    return starts


def low_confidence_flags(probabilities: Sequence[float], threshold: float,
                         segment_starts: Collection[int] = ()) -> list[str | None]:
    """Why each word should be checked by a reviewer (None: no need), from the recogniser's
    word probabilities. Chosen on the shared clips with reference transcripts, against the
    words actually wrong (`bench/captions.py`): a plain threshold flagged many right words
    that open a decoder segment and missed the confident tails of misheard phrases.

    `probability`: below `threshold` (a segment's first word: below SEGMENT_START_SHARE of
    it); `phrase`: it and its neighbours average below `threshold` (a segment's first word
    counting as at least `threshold` there).
    """
    n = len(probabilities)
    steady = [max(p, threshold) if k in segment_starts else p
              for k, p in enumerate(probabilities)]
    out: list[str | None] = []
    for k, p in enumerate(probabilities):
        own = threshold * SEGMENT_START_SHARE if k in segment_starts else threshold
        near = steady[max(0, k - NEIGHBOURS):min(n, k + NEIGHBOURS + 1)]
        out.append("probability" if p < own else
                   "phrase" if sum(near) / len(near) < threshold else None)
    return out


def report(cues: list[Cue], words: list[Word], profile: Profile, *,
           low_confidence: float, glossary: dict[str, Any] | None = None,
           dropped: list[dict[str, Any]] | None = None,
           segment_starts: Collection[int] = ()) -> dict[str, Any]:
    """The QA report. `segment_starts`: indices in `words` of each decoder segment's first
    word (see `low_confidence_flags`)."""
    issues = check_cues(cues, profile)
    errors = [i for i in issues if i["severity"] == "error"]
    speeds = [cue_speed(c) for c in cues]
    flags = low_confidence_flags([w.probability for w in words], low_confidence,
                                 set(segment_starts))
    low = [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
            "probability": round(w.probability, 3), "reason": why}
           for w, why in zip(words, flags, strict=True) if why]
    return {
        "profile": profile.name,
        "limits": {k: v for k, v in vars(profile).items() if k != "name"},
        "cues": len(cues),
        "words": len(words),
        "conformance": round(1 - len({i["cue"] for i in errors}) / len(cues), 4) if cues else 1.0,
        "violations": errors,
        "warnings": [i for i in issues if i["severity"] == "warning"],
        "low_confidence_threshold": low_confidence,
        "low_confidence_words": low,
        "reading_speed": {"cps": distribution([s[0] for s in speeds]),
                          "wpm": distribution([s[1] for s in speeds])},
        "glossary": glossary or {},
        "dropped_segments": dropped or [],
    }
