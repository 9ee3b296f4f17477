"""Soundbites chosen from the transcript: whole sentences, dense in the episode's key terms.

A candidate is a run of consecutive sentences lasting between `min_s` and `max_s`; it starts
at a sentence's first word and ends at a sentence's last word, so a clip never starts or ends
mid-word or mid-sentence. Its score is the weight of the episode's key terms said in it per
second (plus a little for every content word, so an episode without repeated terms still
gets its wordiest stretch). The best is taken, then the best that does not overlap it, and so
on. A clip gets a little air around its words, never reaching into the neighbouring words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.artifacts import Timeline
from pipeline.asr.types import Word
from pipeline.sidecar import SoundbiteSpec
from pipeline.text.terms import key_terms
from pipeline.text.words import Sentence, sentences

log = logging.getLogger(__name__)

#: Air before the first word and after the last one, at most (seconds).
LEAD_S, TAIL_S = 0.25, 0.6
_CONTENT_WORD = 0.02  # score of any content word, against 1.0 for the top key term
TITLE_CHARS = 60


@dataclass(frozen=True)
class Span:
    """A stretch of the transcript (transcript time), with the title it is shared under."""

    start: float
    end: float
    title: str
    terms: tuple[str, ...]

    @property
    def duration(self) -> float:
        return self.end - self.start


def clip_title(text: str, limit: int = TITLE_CHARS) -> str:
    """The opening words of `text`, cut at a word boundary to at most `limit` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(",;:-–—")
    return cut + "…"


def choose(sents: Sequence[Sentence], key: dict[str, float], *, count: int, min_s: float,
           max_s: float, duration_s: float) -> list[Span]:
    """Up to `count` non-overlapping spans, best first. [] when no run of sentences is long
    enough (a short episode)."""
    candidates: list[tuple[float, int, int]] = []
    for i in range(len(sents)):
        weight, words = 0.0, 0
        for j in range(i, len(sents)):
            start, end = _bounds(sents, i, j, duration_s)
            if end - start > max_s:
                break
            stems = sents[j].stems
            weight += sum(key.get(s, 0.0) for s in stems)
            words += len(stems)
            if end - start >= min_s:
                candidates.append(((weight + _CONTENT_WORD * words) / (end - start), i, j))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    chosen: list[tuple[int, int]] = []
    for _, i, j in candidates:
        if len(chosen) == count:
            break
        if all(j < a or i > b for a, b in chosen):
            chosen.append((i, j))
    spans = []
    for i, j in chosen:
        start, end = _bounds(sents, i, j, duration_s)
        stems = [s for k in range(i, j + 1) for s in sents[k].stems]
        terms = tuple(dict.fromkeys(s for s in sorted(stems, key=lambda s: -key.get(s, 0.0))
                                    if s in key))[:5]
        spans.append(Span(round(start, 3), round(end, 3), clip_title(sents[i].text), terms))
    return spans


def _bounds(sents: Sequence[Sentence], i: int, j: int, duration_s: float) -> tuple[float, float]:
    """Start and end of sentences i..j, with some air that stays out of the next words."""
    before = sents[i - 1].end if i > 0 else 0.0
    after = sents[j + 1].start if j + 1 < len(sents) else duration_s
    start = max(sents[i].start - LEAD_S, (before + sents[i].start) / 2, 0.0)
    end = min(sents[j].end + TAIL_S, (sents[j].end + after) / 2, duration_s)
    return start, max(end, sents[j].end)


@dataclass(frozen=True)
class Planned:
    """A soundbite to cut: where in the content (transcript time), how long, its title."""

    content_start: float
    duration: float
    title: str
    origin: str  # sidecar or transcript
    terms: tuple[str, ...] = ()


def plan(specs: Sequence[SoundbiteSpec], words: Sequence[Word], timeline: Timeline, *,
         count: int, min_s: float, max_s: float) -> list[Planned]:
    """The sidecar's soundbites (recording time, placed through the Timeline like chapters),
    else up to `count` chosen from the transcript."""
    if specs:
        out = []
        for k, spec in enumerate(specs, 1):
            a = timeline.to_content(spec.start)
            b = timeline.to_content(spec.start + spec.duration)
            if b - a < 1.0:
                log.warning("[soundbites] soundbite %d (%.1f s for %.1f s of the recording) "
                            "lies where trim cut the recording or past its end; it is left "
                            "out — fix it in the sidecar", k, spec.start, spec.duration)
                continue
            said = " ".join(w.text.strip() for w in words if a <= w.start < b)
            title = spec.title or clip_title(said) or f"Soundbite {k}"
            out.append(Planned(round(a, 3), round(b - a, 3), title, "sidecar"))
        return out
    if count <= 0:
        return []
    sents = sentences(words, max_s=max_s)
    spans = choose(sents, key_terms(sents), count=count, min_s=min_s, max_s=max_s,
                   duration_s=timeline.content_duration_s)
    return [Planned(s.start, round(s.duration, 3), s.title, "transcript", s.terms)
            for s in spans]
