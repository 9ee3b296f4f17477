"""Build caption cues from word timestamps (never from whisper's own segments).

Whisper's segments are decoder windows, not readable captions: they run past two lines, split
mid-clause and drift from speech. Here every cue is cut from the word list by dynamic
programming over the possible break points, so the whole file is optimised together:

* a cue must fit the profile's lines (characters per line × lines) and maximum duration, and
  never spans a long pause;
* breaks are cheapest after sentence ends, then clause punctuation, then before conjunctions
  and at pauses; ending on an article or preposition is expensive;
* reading speed over the profile's limit is expensive, too short cues cost a little.

Lines inside a cue are broken the same way. Timing starts at the first word, ends at most
`max_end_after_speech_s` after the last one, and keeps `min_gap_s` before the next cue.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.asr.types import Word
from pipeline.captions.profiles import Profile

#: Words a line or cue should not end on (articles, prepositions, possessive determiners).
WEAK_ENDINGS = frozenset(
    ["a", "an", "the", "of", "to", "in", "on", "at", "for", "with", "from", "by", "about",
     "into", "onto", "over", "under", "as", "than", "via", "per", "my", "your", "his", "her",
     "its", "our", "their", "this", "that", "these", "those", "and", "or", "but", "nor"]
)
#: Words that open a clause: a good place to start a new line or cue.
#: Prepositions: each opens a phrase, so a break just before one reads well.
PREPOSITIONS = frozenset(
    ["of", "to", "in", "on", "at", "for", "with", "from", "by", "about", "into", "onto", "over",
     "under", "than", "via", "per", "behind", "against", "during", "without", "through"]
)
CLAUSE_STARTERS = frozenset(
    ["and", "but", "or", "so", "because", "which", "who", "whom", "whose", "that", "when",
     "where", "while", "if", "although", "though", "unless", "since", "until", "whereas",
     "then"]
)
LONG_PAUSE_S = 1.5
#: A sentence ending inside a line (not at a line or cue break) is hard to read.
MID_LINE_SENTENCE_END = 5.0
MAX_WORDS_PER_CUE = 40


@dataclass(frozen=True)
class Cue:
    """One caption on screen. `words` are the recognised words behind it, with their timings;
    a cue a reviewer edited has none (its text no longer matches what was recognised)."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None
    words: tuple[Word, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def duration(self) -> float:
        return self.end - self.start


def _bare(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def plausible_duration(word: Word) -> float:
    """The longest a word of this length is usually spoken, in seconds.

    Whisper's word alignment gives each word the silence before it, so a word lasting much
    longer than this starts with a pause: a natural break, and a later true start.
    """
    return 0.3 + 0.1 * len(_bare(word.text))


def _true_start(word: Word) -> float:
    return max(word.start, word.end - plausible_duration(word))


def pause_before(words: list[Word], k: int) -> float:
    if k <= 0 or k >= len(words):
        return 0.0
    gap = words[k].start - words[k - 1].end
    stretched = (words[k].end - words[k].start) - plausible_duration(words[k])
    return max(gap, stretched, 0.0)


def _break_cost(words: list[Word], k: int) -> float:
    """Cost of breaking after words[k] (a line or cue boundary)."""
    last = words[k].text
    if k + 1 >= len(words):
        return 0.0
    nxt = _bare(words[k + 1].text)
    if last.endswith((".", "?", "!", "…")):
        cost = 0.0
    elif last.endswith((",", ";", ":", "—", "-")):
        cost = 1.0
    elif nxt in CLAUSE_STARTERS:
        cost = 2.0
    elif nxt in PREPOSITIONS:
        cost = 3.0
    else:
        cost = 4.0
    if pause_before(words, k + 1) >= 0.3:
        cost = max(0.0, cost - 2.5)
    if _bare(last) in WEAK_ENDINGS and not last.endswith((".", "?", "!", ",", ";", ":")):
        cost += 8.0
    return cost


def layout(words: list[Word], max_chars: int, max_lines: int) -> tuple[str, ...]:
    """Split one cue's words into one line or two (all profiles use two), at the best place.

    If nothing fits (one word longer than a line), the overflowing layout is returned as is;
    the QA report flags it instead of hiding it.
    """
    return _layout(words, max_chars, max_lines)[1]


def _layout(words: list[Word], max_chars: int, max_lines: int) -> tuple[float, tuple[str, ...]]:
    """(cost, lines): cost rates the line break and any sentence ending mid-line."""
    texts = [w.text for w in words]
    whole = " ".join(texts)
    sentence_ends = [k for k, t in enumerate(texts[:-1]) if t.endswith((".", "?", "!"))]
    if len(whole) <= max_chars or max_lines < 2 or len(words) < 2:
        return MID_LINE_SENTENCE_END * len(sentence_ends), (whole,)
    best: tuple[float, tuple[str, ...]] | None = None
    for k in range(len(words) - 1):
        first, second = " ".join(texts[:k + 1]), " ".join(texts[k + 1:])
        overflow = max(0, len(first) - max_chars) + max(0, len(second) - max_chars)
        balance = abs(len(first) - len(second)) / max_chars
        cost = overflow * 100 + _break_cost(words, k) + 3 * balance
        cost += sum(MID_LINE_SENTENCE_END if e != k else 0.5 for e in sentence_ends)
        if len(first) > len(second):  # prefer a bottom-heavy pyramid when it is a tie
            cost += 0.1
        if best is None or cost < best[0]:
            best = (cost, (first, second))
    assert best is not None
    return best


def _fits(text_len: int, profile: Profile) -> bool:
    return text_len <= profile.max_chars_per_line * profile.max_lines + profile.max_lines - 1


def _speed_cost(words: list[Word], chars: int, profile: Profile, linger: float) -> float:
    span = words[-1].end - words[0].start
    shown = max(span + linger, 0.01)
    cost = 0.0
    if profile.max_cps:
        cps = chars / shown
        if cps > profile.max_cps:
            cost += 20.0 * (cps - profile.max_cps)
        elif profile.warn_cps and cps > profile.warn_cps:
            cost += 1.0
    if profile.max_wpm:
        wpm = len(words) / shown * 60
        if wpm > profile.max_wpm:
            cost += 0.5 * (wpm - profile.max_wpm)
        elif profile.warn_wpm and wpm > profile.warn_wpm:
            cost += 1.0
    if span + linger < profile.min_duration_s:
        cost += 5.0
    return cost


def segment(words: list[Word], profile: Profile, breaks: Sequence[float] = ()) -> list[Cue]:
    """Cut `words` (in time order) into cues for `profile`. No cue spans one of `breaks`
    (chapter starts): each chapter's first caption starts with its first word."""
    words = [w for w in words if w.text.strip()]
    n = len(words)
    if n == 0:
        return []
    section = [bisect.bisect_right(sorted(breaks), _true_start(w)) for w in words]
    inf = float("inf")
    best = [inf] * (n + 1)
    back = [0] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        if best[i] == inf:
            continue
        length = -1
        for j in range(i + 1, min(n, i + MAX_WORDS_PER_CUE) + 1):
            w = words[j - 1]
            length += len(w.text) + 1
            if j > i + 1:
                if not _fits(length, profile):
                    break
                if w.end - words[i].start > profile.max_duration_s:
                    break
                if w.start - words[j - 2].end > LONG_PAUSE_S or section[j - 1] != section[i]:
                    break
            group = words[i:j]
            linger = profile.max_end_after_speech_s
            if j < n:
                # may be negative: the cue then ends before its last word to keep the gap
                linger = min(linger, _true_start(words[j]) - w.end - profile.min_gap_s)
            cost = (2.0 + _break_cost(words, j - 1) + _speed_cost(group, length, profile, linger)
                    + _layout(group, profile.max_chars_per_line, profile.max_lines)[0])
            if length < 20 and j < n and not w.text.endswith((".", "?", "!")):
                cost += 2.0  # a fragment flashing by is hard to read
            if best[i] + cost < best[j]:
                best[j] = best[i] + cost
                back[j] = i
    bounds: list[tuple[int, int]] = []
    j = n
    while j > 0:
        bounds.append((back[j], j))
        j = back[j]
    bounds.reverse()
    groups = [words[i:j] for i, j in bounds]
    return _time(groups, profile)


def _time(groups: list[list[Word]], profile: Profile) -> list[Cue]:
    """Timing in whole milliseconds: start at the first word, end near the last, keep gaps."""
    gap = round(profile.min_gap_s * 1000)
    starts = [round(_true_start(g[0]) * 1000) for g in groups]
    cues: list[Cue] = []
    for k, group in enumerate(groups):
        start = starts[k]
        if cues:
            start = max(start, round(cues[-1].end * 1000) + gap)
        last = round(group[-1].end * 1000)
        chars = len(" ".join(w.text for w in group))
        wanted = max(last, start + round(profile.min_duration_s * 1000))
        comfortable = profile.warn_cps or profile.max_cps
        if comfortable:
            wanted = max(wanted, start + round(chars / comfortable * 1000))
        end = min(wanted, last + round(profile.max_end_after_speech_s * 1000))
        if k + 1 < len(groups):
            end = min(end, starts[k + 1] - gap)
        end = max(end, start + 1)
        lines = layout(group, profile.max_chars_per_line, profile.max_lines)
        cues.append(Cue(start=start / 1000, end=end / 1000, lines=lines, words=tuple(group)))
    return cues
