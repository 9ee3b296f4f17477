"""Key terms of an episode and key phrases of a stretch of it.

Key terms are the content words said most often across the episode (a term said once is
not a theme). Key phrases are runs of content words as they were said ("feedback habits",
"quarterly review"), scored by how much more their words belong to one stretch than to the
rest: that is what makes a good short title for a chapter.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.text.words import STOPWORDS, Sentence, stem

#: How many terms count as the episode's key terms.
KEY_TERMS = 20
_PIECE = re.compile(r"[^\W\d_](?:[\w'’-]*\w)?|[.,;:!?…()\"“”]", re.UNICODE)


def key_terms(sentences: Sequence[Sentence], limit: int = KEY_TERMS) -> dict[str, float]:
    """stem → weight (1.0 for the most frequent) of terms said at least twice."""
    counts = Counter(s for sentence in sentences for s in sentence.stems)
    top = [(term, n) for term, n in counts.most_common(limit) if n >= 2]
    if not top:
        return {}
    most = top[0][1]
    return {term: n / most for term, n in top}


@dataclass(frozen=True)
class Phrase:
    text: str  # as said (first occurrence), without punctuation
    stems: tuple[str, ...]


def phrases(sentences: Sequence[Sentence], max_words: int = 3) -> list[Phrase]:
    """Runs of up to `max_words` content words, split at function words and punctuation."""
    out: list[Phrase] = []
    for sentence in sentences:
        run: list[str] = []
        for piece in [*_PIECE.findall(sentence.text), "."]:
            word = piece.lower().replace("’", "'")
            if word[0].isalpha() and word not in STOPWORDS and len(word) >= 3:
                run.append(piece)
                continue
            for k in range(0, len(run), max_words):
                chunk = run[k:k + max_words]
                out.append(Phrase(" ".join(chunk), tuple(stem(w) for w in chunk)))
            run = []
    return out


def title_for(part: Sequence[Sentence], others: Sequence[Sequence[Sentence]],
              max_chars: int = 48) -> str:
    """A short title for `part` from its key phrase: the run of content words whose words
    are most frequent here and least frequent in the `others` parts."""
    here = Counter(s for sentence in part for s in sentence.stems)
    df = Counter(s for other in others for s in {x for sentence in other for x in sentence.stems})
    n = len(others) + 1

    def weight(term: str) -> float:
        return here[term] * math.log((n + 1) / (1 + df[term]))

    best: tuple[float, str] | None = None
    for phrase in phrases(part):
        if len(phrase.text) > max_chars:
            continue
        # each word's weight, plus a little for a phrase said more than once
        score = sum(weight(t) for t in phrase.stems) + 0.1 * len(phrase.stems)
        if best is None or score > best[0] + 1e-9:
            best = (score, phrase.text)
    if best is None:
        return ""
    text = best[1]
    return text[0].upper() + text[1:]
