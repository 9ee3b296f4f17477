"""Sentences and content words of a transcript.

Sentences end where the recogniser put a full stop, question or exclamation mark, or at a
long pause when it put none; each keeps its words, so its start is a word's start (a span
cut from it never begins mid-word). Content words are the words left after English function
words are removed, reduced to a crude stem ("habits" and "habit" count as one term). Other
languages still work, less well: their function words are frequent everywhere, which the
scoring in `terms` and `topics` already discounts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.asr.types import Word

#: A pause this long ends a sentence even without punctuation (seconds).
SENTENCE_PAUSE_S = 2.0
#: An unpunctuated run is cut at its longest pause once it is this long (seconds).
MAX_SENTENCE_S = 30.0

_STOPWORDS_TEXT = """
a about above after again against all almost also am an and any are aren't around as at be
because been before being below between both but by can can't cannot could couldn't did
didn't do does doesn't doing don't down during each either else even ever every few for from
further get gets getting go goes going gone got had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's however i i'd i'll
i'm i've if in into is isn't it it's its itself just let let's like likely lot lots made
make makes many may maybe me might more most much must mustn't my myself need needs no nor
not now of off often oh ok okay on once one ones only or other others ought our ours
ourselves out over own per perhaps please put quite rather really right said same say says
see seem seems shall shan't she she'd she'll she's should shouldn't since so some something
still such take than that that's the their theirs them themselves then there there's these
they they'd they'll they're they've thing things think this those though through thus to
today too under until up upon us use used using very via want wants was wasn't way we we'd
we'll we're we've well were weren't what what's whatever when when's where where's whether
which while who who's whom whose why why's will with within without won't would wouldn't
yeah yes yet you you'd you'll you're you've your yours yourself yourselves also actually
back come comes came know knew known look looking mean means new next first last two three
four five six seven eight nine ten another kind sort bit go went gonna wanna um uh
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_TOKEN = re.compile(r"[^\W\d_](?:[\w'’-]*\w)?", re.UNICODE)
_END = re.compile(r"[.!?…][\"'”’)\]]*$")


def stem(word: str) -> str:
    """A crude English stem: enough to count "habit", "habits" and "habitual" together."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if w.endswith(("ss", "us", "is")):
        return w
    for suffix in ("ations", "ation", "ments", "ment", "ness", "ingly", "ings", "ing", "edly",
                   "ies", "ied", "ed", "ly", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= (2 if suffix in ("ies", "ied")
                                                             else 4):
            w = w[:-len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            break
    return w


def tokens(text: str) -> list[str]:
    """The words of `text`, lower-cased, punctuation removed."""
    return [t.lower().replace("’", "'") for t in _TOKEN.findall(text)]


def content_words(text: str) -> list[tuple[str, str]]:
    """(surface, stem) of each content word: no function words, nothing shorter than 3."""
    return [(t, stem(t)) for t in tokens(text) if t not in STOPWORDS and len(t) >= 3]


@dataclass(frozen=True)
class Sentence:
    """A run of words ending at a sentence end (or a long pause), in transcript time."""

    words: tuple[Word, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words)

    @property
    def stems(self) -> list[str]:
        return [s for _, s in content_words(self.text)]


def sentences(words: Iterable[Word], max_s: float = MAX_SENTENCE_S) -> list[Sentence]:
    """Split the transcript's words into sentences; runs longer than `max_s` are cut at
    their longest pauses (a recogniser that writes no full stops still gives units)."""
    out: list[Sentence] = []
    current: list[Word] = []
    for word in words:
        if not word.text.strip():
            continue
        if current and word.start - current[-1].end >= SENTENCE_PAUSE_S:
            out += _split_long(current, max_s)
            current = []
        current.append(word)
        if _END.search(word.text.strip()):
            out += _split_long(current, max_s)
            current = []
    if current:
        out += _split_long(current, max_s)
    return out


def _split_long(words: Sequence[Word], max_s: float) -> list[Sentence]:
    """A run longer than `max_s` is cut at its longest pause, recursively."""
    if len(words) < 2 or words[-1].end - words[0].start <= max_s:
        return [Sentence(tuple(words))]
    gaps = [(words[i + 1].start - words[i].end, i) for i in range(len(words) - 1)]
    _, cut = max(gaps)
    return _split_long(words[:cut + 1], max_s) + _split_long(words[cut + 1:], max_s)
