"""Suggested chapters: where the transcript changes topic (TextTiling over sentence windows).

Hearst's TextTiling, with real sentences and windows measured in seconds instead of token
counts: at every gap between two sentences, the content words said in the `window_s` before
are compared with those said in the `window_s` after (cosine similarity). Where the talk
stays on a topic the two windows share words; at a topic shift they share few. Each gap's
*depth* is how far its similarity lies below the peaks on either side, so a dip between two
cohesive stretches counts more than a gap in a stretch that never repeats a word. A long
pause before a sentence adds to its gap's score: presenters pause between segments, and a
stretch with no words (music, another language the recogniser dropped) is a boundary.

Boundaries are taken best first, at least `min_chapter_s` apart (and from the ends), among
gaps scoring above a cut-off: the mean score plus half its standard deviation (stricter than
TextTiling's "mean minus half", which assumes boundaries are common) and never below
MIN_SCORE, so talk on one topic is left as one chapter. Each
chapter is titled with its key phrase (`terms.title_for`). Window and minimum length scale
with the episode (about a fifteenth of it, within bounds), so an hour gets chapters of
minutes and a short briefing of tens of seconds.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.text.terms import title_for
from pipeline.text.words import Sentence

#: A pause this long before a sentence adds the full pause bonus to its gap (seconds).
PAUSE_FULL_S = 3.0
PAUSE_WEIGHT = 0.35
#: Sentences longer than this are cut at their longest pause for comparing (a recogniser that
#: writes few full stops still gives units a window can hold several of).
UNIT_MAX_S = 12.0
#: A gap must score at least this to be a boundary, however flat the rest: talk that stays
#: on one topic has small dips everywhere, and they are not chapters.
MIN_SCORE = 0.45
#: Chapters start this much before their first word, or halfway into a shorter pause.
LEAD_S = 0.5


@dataclass(frozen=True)
class Topic:
    """A suggested chapter: where it starts (transcript time) and its title."""

    start: float
    title: str


def auto_min_chapter_s(duration_s: float) -> float:
    """About a fifteenth of the episode, at least 5 s and at most 5 minutes."""
    return min(max(duration_s / 15, 5.0), 300.0)


def auto_window_s(duration_s: float) -> float:
    """About a sixth of the episode, between 15 s and 90 s."""
    return min(max(duration_s / 6, 15.0), 90.0)


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(v * b[k] for k, v in a.items() if k in b)
    norm = math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def _depths(sims: Sequence[float]) -> list[float]:
    """TextTiling's depth score: climb to the highest similarity on each side. The climb
    stops on a plateau: in talk that never repeats a word most similarities are 0, and a
    run of zeros must not borrow the depth of a peak far away."""
    depths = []
    for i, s in enumerate(sims):
        left = s
        for j in range(i - 1, -1, -1):
            if sims[j] <= left:
                break
            left = sims[j]
        right = s
        for j in range(i + 1, len(sims)):
            if sims[j] <= right:
                break
            right = sims[j]
        depths.append((left - s) + (right - s))
    return depths


def gap_scores(sents: Sequence[Sentence], window_s: float) -> list[float]:
    """Score of the gap before each sentence (index 0 has none: 0.0)."""
    bags = [Counter(s.stems) for s in sents]
    sims: list[float] = []
    for i in range(1, len(sents)):
        edge = sents[i].start
        left: Counter[str] = Counter()
        for k in range(i - 1, -1, -1):
            if k < i - 1 and sents[k].start < edge - window_s:
                break
            left.update(bags[k])
        right: Counter[str] = Counter()
        for k in range(i, len(sents)):
            if k > i and sents[k].start >= edge + window_s:
                break
            right.update(bags[k])
        sims.append(_cosine(left, right))
    depths = _depths(sims)
    pauses = [min(max(sents[i].start - sents[i - 1].end, 0.0) / PAUSE_FULL_S, 1.0)
              for i in range(1, len(sents))]
    return [0.0, *(d + PAUSE_WEIGHT * p for d, p in zip(depths, pauses, strict=True))]


def suggest(sents: Sequence[Sentence], duration_s: float, *, min_chapter_s: float = 0.0,
            window_s: float = 0.0, max_chapters: int = 0) -> list[Topic]:
    """Chapters for a transcript of `duration_s` seconds (0 for a setting = automatic).

    The first chapter starts at 0. Returns [] when there is too little text to divide."""
    min_len = min_chapter_s or auto_min_chapter_s(duration_s)
    window = window_s or auto_window_s(duration_s)
    if len(sents) < 3 or duration_s < 2 * min_len:
        return []
    scores = gap_scores(sents, window)
    candidates = scores[1:]
    mean = sum(candidates) / len(candidates)
    sd = math.sqrt(sum((c - mean) ** 2 for c in candidates) / len(candidates))
    cutoff = max(mean + sd / 2, MIN_SCORE)
    limit = max_chapters or max(2, int(duration_s // min_len))
    chosen: list[int] = []
    for i in sorted(range(1, len(sents)), key=lambda k: -scores[k]):
        if scores[i] < cutoff or len(chosen) + 1 >= limit:
            break
        at = _start(sents, i)
        if at < min_len or duration_s - at < min_len:
            continue
        if all(abs(at - _start(sents, j)) >= min_len for j in chosen):
            chosen.append(i)
    cuts = [0, *sorted(chosen), len(sents)]
    parts = [list(sents[a:b]) for a, b in itertools.pairwise(cuts)]
    topics = []
    for k, part in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != k]
        title = title_for(part, others) or f"Part {k + 1}"
        topics.append(Topic(0.0 if k == 0 else _start(sents, cuts[k]), title))
    return _distinct(topics)


def _start(sents: Sequence[Sentence], i: int) -> float:
    """Where a chapter beginning with sentence `i` starts: a little before its first word."""
    pause = sents[i].start - sents[i - 1].end if i > 0 else sents[i].start
    return round(max(sents[i].start - min(LEAD_S, max(pause, 0.0) / 2), 0.0), 3)


def _distinct(topics: list[Topic]) -> list[Topic]:
    """Two chapters with the same title get numbered, so a listener can tell them apart."""
    seen: Counter[str] = Counter(t.title for t in topics)
    count: Counter[str] = Counter()
    out = []
    for t in topics:
        if seen[t.title] > 1:
            count[t.title] += 1
            t = Topic(t.start, f"{t.title} ({count[t.title]})")
        out.append(t)
    return out
