"""Speaker labels in captions and transcripts.

The diarize stage leaves turns (content time) and names in `speakers.json`; here each word
gets the name of the turn it overlaps most, cue breaks are placed at every change of speaker
(so no cue holds two voices), and the writers show a name where the speaker changes:
`<v Name>` on every WebVTT cue (the voice, for players and assistive technology) plus a
visible `Name: ` at each change in WebVTT, SRT, TXT and HTML, because browsers do not show the
voice's name. A single voice is never labelled.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from pipeline.asr.diarize import Diarization, Turn, label_words, speaker_changes
from pipeline.asr.types import Word
from pipeline.captions.segmenter import Cue
from pipeline.errors import PipelineError

__all__ = ["assign", "changes", "label", "prefixed", "speaker_changes", "starts_turn"]


class HasSpeaker(Protocol):
    @property
    def speaker(self) -> str | None: ...


def label(words: Sequence[Word], path: Path | None) -> list[Word]:
    """`words` (content time) with their speaker's name, from the diarize stage's file.
    Without the file, or with fewer than two speakers, the words are returned as they are."""
    if path is None:
        return list(words)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = [str(n) for n in data["speakers"]]
        turns = tuple(Turn.from_dict(t) for t in data["turns"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path.name} is not a valid speakers file ({exc}); run "
                            "`learncast retry ID --from diarize`") from exc
    count = len({t.speaker for t in turns})
    if count < 2 or any(t.speaker >= len(names) for t in turns):
        return list(words)
    diarization = Diarization(count, turns, 0.0, 0.0)
    return label_words(words, diarization, names)


def changes(words: Sequence[Word]) -> list[float]:
    """Where a new speaker's first word starts: breaks for the segmenter."""
    return speaker_changes(words)


def assign(cues: Sequence[Cue]) -> list[Cue]:
    """Each cue with the speaker of its words (the one who says most of them)."""
    out = []
    for cue in cues:
        said = Counter(w.speaker for w in cue.words if w.speaker)
        out.append(replace(cue, speaker=said.most_common(1)[0][0]) if said else cue)
    return out


def starts_turn(items: Sequence[HasSpeaker], k: int) -> bool:
    """Whether item `k` (a cue or paragraph) is where its speaker starts talking."""
    speaker = items[k].speaker
    return bool(speaker) and (k == 0 or items[k - 1].speaker != speaker)


def prefixed(text: str, speaker: str | None) -> str:
    return f"{speaker}: {text}" if speaker else text
