"""Quality guards between the engine and the captions.

Whisper invents text over silence and music ("Thank you for watching"), loops on repeated
phrases, and misspells product names. These guards drop what is likely invented, and correct
near-miss spellings of the glossary terms a show or episode declares, reporting what they did
so the QA report can say how much was changed.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.asr.types import Segment, Transcript, Word

log = logging.getLogger(__name__)

#: Phrases whisper produces from its subtitle-heavy training data when nobody speaks. Only a
#: short segment consisting of such a phrase is dropped; "thanks for listening" is left alone,
#: since podcast hosts really say it.
BOILERPLATE = (
    r"thank(s| you)( so much| very much)? for watching",
    r"(please )?(like and )?subscribe( to (my|our|the) channel)?",
    r"subtitles? (by|created by|provided by|made by)",
    r"captions? by",
    r"transcri(bed|ption) by",
    r"amara\.org",
    r"www\.[a-z0-9-]+\.(com|org|net)",
    r"see you in the next video",
)
_BOILERPLATE_RE = re.compile(r"^\W*(" + "|".join(BOILERPLATE) + r")\b", re.IGNORECASE)
BOILERPLATE_MAX_WORDS = 12


@dataclass(frozen=True)
class GuardSettings:
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


@dataclass
class GuardReport:
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def add(self, segment: Segment, reason: str) -> None:
        self.dropped.append({"start": round(segment.start, 3), "end": round(segment.end, 3),
                             "text": segment.text, "reason": reason})


def _repetitive(segment: Segment) -> bool:
    """A phrase looping inside one segment: few distinct words among many."""
    words = [re.sub(r"\W", "", w.text.lower()) for w in segment.words]
    words = [w for w in words if w]
    return len(words) >= 8 and len(set(words)) / len(words) < 0.3


#: A block of this many items or fewer must repeat `SHORT_REPEATS` times to be a loop
#: ("no, no, no" is speech; five of them in a row is a decoder stuck on one token).
SHORT_PERIOD = 2
SHORT_REPEATS = 5
#: Longer blocks ("Thank you very much for your time.") are a loop from the third copy on.
REPEATS = 3
#: Longest block looked for (tokens or words).
MAX_PERIOD = 48


def repeating_tail(items: Sequence[Hashable], *, repeats: int = REPEATS,
                   short_repeats: int = SHORT_REPEATS, max_period: int = MAX_PERIOD) -> int:
    """The length of the block `items` ends with, repeated back to back, if it is a loop; 0
    if not. A block of up to `SHORT_PERIOD` items needs `short_repeats` copies, a longer one
    `repeats`; both engines' decoders stop a window at the first loop this finds."""
    n = len(items)
    for period in range(1, min(max_period, n // repeats) + 1):
        copies = short_repeats if period <= SHORT_PERIOD else repeats
        if n < period * copies:
            continue
        block = items[n - period:]
        if all(items[n - (k + 1) * period:n - k * period] == block for k in range(1, copies)):
            return period
    return 0


def loop_words(text: str) -> list[str]:
    """Words compared when looking for loops: lowercase, without punctuation."""
    return [w for w in (re.sub(r"\W", "", t.lower()) for t in text.split()) if w]


def drop_hallucinations(transcript: Transcript, settings: GuardSettings) -> tuple[Transcript,
                                                                                 GuardReport]:
    """Remove segments that are most likely not speech; keep everything else untouched."""
    report = GuardReport()
    kept: list[Segment] = []
    for seg in transcript.segments:
        if not seg.words:
            continue
        if len(kept) >= 2 and loop_words(seg.text) and all(
                loop_words(seg.text) == loop_words(k.text) for k in kept[-2:]):
            report.add(seg, "repetition loop (third identical segment in a row)")
        elif (seg.no_speech_prob > settings.no_speech_threshold
                and seg.avg_logprob < settings.logprob_threshold) or seg.no_speech_prob > 0.9:
            report.add(seg, f"no speech (no_speech_prob {seg.no_speech_prob:.2f})")
        elif seg.compression_ratio > settings.compression_ratio_threshold or _repetitive(seg):
            report.add(seg, f"repetitive text (compression ratio {seg.compression_ratio:.2f})")
        elif _BOILERPLATE_RE.match(seg.text) and len(seg.words) <= BOILERPLATE_MAX_WORDS:
            report.add(seg, "subtitle boilerplate")
        else:
            kept.append(seg)
    for item in report.dropped:
        log.warning("[transcribe] dropped %.1f–%.1f s %r: %s", item["start"], item["end"],
                    item["text"][:60], item["reason"])
    return replace(transcript, segments=tuple(kept)), report


# --- glossary ----------------------------------------------------------------------------


def glossary_prompt(terms: list[str], max_chars: int = 600) -> str | None:
    """An initial prompt that makes whisper prefer the glossary spellings.

    Whisper reads the prompt as preceding speech, so a short natural sentence listing the terms
    biases the decoder towards them; it is capped because the prompt shares the 448-token
    context with the output.
    """
    if not terms:
        return None
    prompt = "Glossary: " + ", ".join(terms) + "."
    return prompt if len(prompt) <= max_chars else prompt[:max_chars].rsplit(",", 1)[0] + "."


_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def _core(text: str) -> tuple[str, str, str]:
    match = _EDGE.match(text)
    assert match is not None  # the pattern matches every string
    return match.group(1), match.group(2), match.group(3)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass
class GlossaryResult:
    terms: list[str]
    hits: dict[str, int] = field(default_factory=dict)
    corrections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def found(self) -> int:
        return sum(1 for n in self.hits.values() if n)

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.terms, "hits": self.hits, "terms_found": self.found,
                "corrections": self.corrections}


def _similar(a: str, b: str, threshold: float) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    if min(len(a), len(b)) < 4:  # short words: too many false friends
        return False
    return difflib.SequenceMatcher(None, a, b).ratio() >= threshold


def apply_glossary(transcript: Transcript, terms: list[str],
                   threshold: float = 0.8) -> tuple[Transcript, GlossaryResult]:
    """Respell near misses of glossary terms (e.g. "Comfy UI" → "ComfyUI") and count hits.

    Words are compared by their letters only, so spacing, case and hyphenation differences
    match; short words (under 4 letters) must match exactly.
    """
    result = GlossaryResult(terms=list(terms), hits={t: 0 for t in terms})
    if not terms:
        return transcript, result
    targets = [(t, _norm(t), len(t.split())) for t in terms if _norm(t)]
    new_segments: list[Segment] = []
    for seg in transcript.segments:
        words = list(seg.words)
        out: list[Word] = []
        i = 0
        while i < len(words):
            match = _best_match(words, i, targets, threshold)
            if match is None:
                out.append(words[i])
                i += 1
                continue
            term, span = match
            group = words[i:i + span]
            lead, _, _ = _core(group[0].text)
            _, _, trail = _core(group[-1].text)
            original = " ".join(w.text for w in group)
            merged = Word(text=f"{lead}{term}{trail}", start=group[0].start, end=group[-1].end,
                          probability=min(w.probability for w in group))
            if merged.text != original:
                result.corrections.append({"start": round(merged.start, 3), "from": original,
                                           "to": merged.text})
            result.hits[term] += 1
            out.append(merged)
            i += span
        text = " ".join(w.text for w in out) if out != words else seg.text
        new_segments.append(replace(seg, words=tuple(out), text=text))
    for item in result.corrections:
        log.info("[transcribe] glossary: %r → %r at %.1f s", item["from"], item["to"],
                 item["start"])
    return replace(transcript, segments=tuple(new_segments)), result


def _best_match(words: list[Word], i: int, targets: list[tuple[str, str, int]],
                threshold: float) -> tuple[str, int] | None:
    """The glossary term starting at words[i] and how many words it covers, if any.

    A window of the term's own word count may match approximately; a window one word longer
    only when its letters equal the term exactly ("Work Day" → "Workday"), so neighbouring
    words are never swallowed by a fuzzy match.
    """
    best: tuple[float, str, int] | None = None
    for term, norm, n_words in targets:
        for span in range(1, n_words + 2):
            if i + span > len(words):
                break
            candidate = _norm("".join(_core(w.text)[1] for w in words[i:i + span]))
            if span == n_words:
                if not _similar(candidate, norm, threshold):
                    continue
            elif candidate != norm:
                continue
            score = difflib.SequenceMatcher(None, candidate, norm).ratio()
            if best is None or score > best[0] or (score == best[0] and span > best[2]):
                best = (score, term, span)
    return (best[1], best[2]) if best else None
