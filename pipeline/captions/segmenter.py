"""Build caption cues from word timestamps (never from whisper's own segments).

Whisper's segments are decoder windows, not readable captions: they run past two lines, split
mid-clause and drift from speech. Here every cue is cut from the word list by dynamic
programming over the possible break points, so the whole file is optimised together:

* a cue must fit the profile's lines (characters per line × lines) and maximum duration, and
  never spans a long pause; a shorter pause inside a cue costs by its length (the text would
  show before it is said);
* breaks are cheapest after sentence ends, then clause punctuation, then before conjunctions,
  then before prepositions, and cheaper at pauses; ending on an article or preposition is
  expensive, and so is cutting a sentence's first or last two words off from the rest
  ("...describe what you saw | and heard."); a cue break counts twice a line break;
* reading speed over the profile's limit is expensive where a longer showing would fix it,
  cheap where the words themselves are spoken too fast (the QA report lists those);
  too short cues cost a little.

Lines inside a cue are broken the same way. Timing starts at the first word, ends at most
`max_end_after_speech_s` after the last one, and keeps `min_gap_s` before the next cue. Words
whose times were checked against the audio (`aligned`, see `pipeline.captions.timing`) are
taken as they are; whisper's own times are corrected for its habit of giving a word the
silence before it.
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
     "under", "than", "via", "per", "behind", "against", "during", "without", "through",
     "before", "after", "between", "across", "around", "towards", "toward", "within",
     "upon", "among", "beyond", "along", "despite", "throughout", "inside", "outside"]
)
CLAUSE_STARTERS = frozenset(
    ["and", "but", "or", "so", "because", "which", "who", "whom", "whose", "that", "when",
     "where", "while", "if", "although", "though", "unless", "since", "until", "whereas",
     "then", "whether", "once"]
)
#: No cue spans a pause this long; shorter pauses inside a cue cost SPANNED_PAUSE_COST per
#: second beyond SPANNED_PAUSE_FREE_S (text shown long before it is said, or long after).
LONG_PAUSE_S = 1.5
SPANNED_PAUSE_FREE_S = 0.25
SPANNED_PAUSE_COST = 10.0
#: Cutting a sentence's first or last ORPHAN_WORDS words off from the rest costs this.
ORPHAN_WORDS = 2
ORPHAN_COST = 4.0
#: A cue break at a poor place reads worse than a line break there (both lines are seen at
#: once): its break cost counts this many times.
CUE_BREAK_WEIGHT = 2.0
#: Each cue costs this much: fewer, fuller cues unless breaking buys a better place.
CUE_COST = 2.0
#: A cue spoken faster than the reading-speed limit costs this (no cutting can fix it).
UNAVOIDABLE_SPEED_COST = 1.0
#: A sentence ending inside a line (not at a line or cue break) is hard to read.
MID_LINE_SENTENCE_END = 5.0
MAX_WORDS_PER_CUE = 40
CHAPTER_SLACK_S = 0.3


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


def ends_sentence(text: str) -> bool:
    return text.rstrip("\"'”’)]").endswith((".", "?", "!", "…"))


def ends_clause(text: str) -> bool:
    return text.rstrip("\"'”’)]").endswith((",", ";", ":", "—", "–", "-"))


def plausible_duration(word: Word) -> float:
    """The longest a word of this length is usually spoken, in seconds.

    Whisper's word alignment gives each word the silence before it, so a word lasting much
    longer than this starts with a pause: a natural break, and a later true start. Only used
    for words whose times were not checked against the audio (`aligned=False`).
    """
    return 0.3 + 0.1 * len(_bare(word.text))


def _true_start(word: Word) -> float:
    return max(word.start, word.end - plausible_duration(word))


def pause_before(words: Sequence[Word], k: int, aligned: bool = False) -> float:
    """Silence before words[k]: the gap after the previous word, and for words straight from
    whisper also the silence a too-long word swallowed. In whole milliseconds (what caption
    times are): in floating point the same pause, shifted by an intro, can land on either side
    of a threshold, and the same words would be cut into different cues."""
    if k <= 0 or k >= len(words):
        return 0.0
    gap = words[k].start - words[k - 1].end
    if aligned:
        return round(max(gap, 0.0), 3)
    stretched = (words[k].end - words[k].start) - plausible_duration(words[k])
    return round(max(gap, stretched, 0.0), 3)


@dataclass(frozen=True)
class _Speech:
    """The words, with what the costs need about each one: where its speech starts, the
    pause before it, and how far it is from its sentence's first and last word."""

    words: Sequence[Word]
    starts: list[float]
    pauses: list[float]
    from_start: list[int]  # words of its sentence before it
    to_end: list[int]  # words of its sentence after it

    @classmethod
    def of(cls, words: Sequence[Word], aligned: bool = False) -> _Speech:
        n = len(words)
        from_start, to_end = [0] * n, [0] * n
        for k in range(1, n):
            from_start[k] = 0 if ends_sentence(words[k - 1].text) else from_start[k - 1] + 1
        for k in range(n - 2, -1, -1):
            to_end[k] = 0 if ends_sentence(words[k].text) else to_end[k + 1] + 1
        return cls(words=words,
                   starts=[w.start if aligned else _true_start(w) for w in words],
                   pauses=[pause_before(words, k, aligned) for k in range(n)],
                   from_start=from_start, to_end=to_end)


def _break_cost(sp: _Speech, k: int) -> float:
    """Cost of breaking after word k (a line or cue boundary): cheapest after a sentence,
    then after clause punctuation, before a conjunction, before a preposition; a pause makes
    any break cheaper; ending on an article or preposition, or cutting a sentence's first or
    last one or two words off from the rest ("...what you saw | and heard."), is expensive."""
    words = sp.words
    if k + 1 >= len(words):
        return 0.0
    last = words[k].text
    nxt = _bare(words[k + 1].text)
    if ends_sentence(last):
        return 0.0
    if ends_clause(last):
        cost = 1.0
    elif nxt in CLAUSE_STARTERS:
        cost = 2.0
    elif nxt in PREPOSITIONS:
        cost = 3.0
    else:
        cost = 4.0
    if sp.pauses[k + 1] >= 0.3:
        cost = max(0.0, cost - 2.5)
    if _bare(last) in WEAK_ENDINGS and not ends_clause(last):
        cost += 8.0
    if sp.to_end[k] <= ORPHAN_WORDS:  # the next line/cue would hold only a sentence's tail
        cost += ORPHAN_COST
    if sp.from_start[k] + 1 <= ORPHAN_WORDS:  # this one would end on a sentence's start
        cost += ORPHAN_COST
    return cost


def layout(words: Sequence[Word], max_chars: int, max_lines: int) -> tuple[str, ...]:
    """Split one cue's words into one line or two (all profiles use two), at the best place.

    If nothing fits (one word longer than a line), the overflowing layout is returned as is;
    the QA report flags it instead of hiding it.
    """
    return _layout(_Speech.of(words), 0, len(words), max_chars, max_lines)[1]


def _layout(sp: _Speech, i: int, j: int, max_chars: int, max_lines: int
            ) -> tuple[float, tuple[str, ...]]:
    """(cost, lines) of words[i:j]: cost rates the line break and any sentence ending
    mid-line."""
    texts = [w.text for w in sp.words[i:j]]
    whole = " ".join(texts)
    sentence_ends = [k for k, t in enumerate(texts[:-1]) if ends_sentence(t)]
    if len(whole) <= max_chars or max_lines < 2 or len(texts) < 2:
        return MID_LINE_SENTENCE_END * len(sentence_ends), (whole,)
    best: tuple[float, tuple[str, ...]] | None = None
    for k in range(len(texts) - 1):
        first, second = " ".join(texts[:k + 1]), " ".join(texts[k + 1:])
        overflow = max(0, len(first) - max_chars) + max(0, len(second) - max_chars)
        balance = abs(len(first) - len(second)) / max_chars
        cost = overflow * 100 + _break_cost(sp, i + k) + 3 * balance
        cost += sum(MID_LINE_SENTENCE_END if e != k else 0.5 for e in sentence_ends)
        if len(first) > len(second):  # prefer a bottom-heavy pyramid when it is a tie
            cost += 0.1
        if best is None or cost < best[0]:
            best = (cost, (first, second))
    assert best is not None
    return best


def _fits(text_len: int, profile: Profile) -> bool:
    return text_len <= profile.max_chars_per_line * profile.max_lines + profile.max_lines - 1


def _speed_cost(words: Sequence[Word], chars: int, profile: Profile, linger: float) -> float:
    """Reading speed over the profile's limit: expensive where a longer showing would fix it,
    cheap where the words alone are spoken faster than the limit (no cutting of them can
    help; only editing can, and the QA report says so), so fast speech is still broken at
    sentences and clauses rather than wherever a few words' linger happens to fall."""
    span = words[-1].end - words[0].start
    shown = max(span + linger, 0.01)
    longest = max(span + profile.max_end_after_speech_s, 0.01)
    cost = 0.0
    for limit, warn, amount, weight in (
            (profile.max_cps, profile.warn_cps, float(chars), 20.0),
            (profile.max_wpm, profile.warn_wpm, len(words) * 60.0, 0.5)):
        if not limit:
            continue
        rate, fastest = amount / shown, amount / longest
        if fastest > limit:
            cost += UNAVOIDABLE_SPEED_COST
        elif rate > limit:
            cost += weight * (rate - limit)
        elif warn and rate > warn:
            cost += 1.0
    if span + linger < profile.min_duration_s:
        cost += 5.0
    return cost


def segment(words: list[Word], profile: Profile, breaks: Sequence[float] = (), *,
            aligned: bool = False) -> list[Cue]:
    """Cut `words` (in time order) into cues for `profile`. No cue spans one of `breaks`
    (chapter starts): each chapter's first caption starts with its first word.

    `aligned`: the words' times were checked against the audio (`pipeline.captions.timing`),
    so a gap between words is a pause and a word starts where its speech starts; otherwise
    whisper's habit of giving a word the silence before it is allowed for.
    """
    words = [w for w in words if w.text.strip()]
    n = len(words)
    if n == 0:
        return []
    sp = _Speech.of(words, aligned)
    # A chapter marked by ear lands at or just after its first word's onset: a word starting
    # up to CHAPTER_SLACK_S before a chapter start opens that chapter.
    section = [bisect.bisect_right(sorted(breaks), t + CHAPTER_SLACK_S) for t in sp.starts]
    inf = float("inf")
    best = [inf] * (n + 1)
    back = [0] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        if best[i] == inf:
            continue
        length = -1
        spanned = 0.0
        for j in range(i + 1, min(n, i + MAX_WORDS_PER_CUE) + 1):
            w = words[j - 1]
            length += len(w.text) + 1
            if j > i + 1:
                if not _fits(length, profile):
                    break
                if w.end - sp.starts[i] > profile.max_duration_s:
                    break
                if sp.pauses[j - 1] > LONG_PAUSE_S or section[j - 1] != section[i]:
                    break
                spanned += max(0.0, sp.pauses[j - 1] - SPANNED_PAUSE_FREE_S)
            group = words[i:j]
            linger = profile.max_end_after_speech_s
            if j < n:
                # may be negative: the cue then ends before its last word to keep the gap
                linger = min(linger, sp.starts[j] - w.end - profile.min_gap_s)
            cost = (CUE_COST + CUE_BREAK_WEIGHT * _break_cost(sp, j - 1)
                    + _speed_cost(group, length, profile, linger)
                    + _layout(sp, i, j, profile.max_chars_per_line, profile.max_lines)[0]
                    + SPANNED_PAUSE_COST * spanned)
            if length < 20 and (sp.to_end[j - 1] or sp.from_start[i]):
                cost += 2.0  # a fragment of a sentence flashing by is hard to read
            if best[i] + cost < best[j]:
                best[j] = best[i] + cost
                back[j] = i
    bounds: list[tuple[int, int]] = []
    j = n
    while j > 0:
        bounds.append((back[j], j))
        j = back[j]
    bounds.reverse()
    return _time(sp, bounds, profile)


def _time(sp: _Speech, bounds: list[tuple[int, int]], profile: Profile) -> list[Cue]:
    """Timing in whole milliseconds: start at the first word, end near the last, keep gaps."""
    gap = round(profile.min_gap_s * 1000)
    starts = [round(sp.starts[i] * 1000) for i, _ in bounds]
    cues: list[Cue] = []
    for k, (i, j) in enumerate(bounds):
        group = list(sp.words[i:j])
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
        if k + 1 < len(bounds):
            end = min(end, starts[k + 1] - gap)
        end = max(end, start + 1)
        lines = _layout(sp, i, j, profile.max_chars_per_line, profile.max_lines)[1]
        cues.append(Cue(start=start / 1000, end=end / 1000, lines=lines, words=tuple(group)))
    return cues
