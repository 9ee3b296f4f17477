"""Edited captions: parse our WebVTT into cues, edit them, and render every caption format.

The caption stage (`pipeline/captions/`) produces the first version from word timestamps;
once a reviewer edits, the words no longer match the text, so the cues themselves become the
source: they are parsed back from the VTT, edited here, checked with the same profile rules
(`pipeline.captions.qa`) and written with the same VTT/SRT writers. Only the TXT and HTML
transcripts are rendered from cues here, since the caption stage builds those from words.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.captions.profiles import Profile, get_profile
from pipeline.captions.qa import check_cues, distribution
from pipeline.captions.segmenter import Cue
from pipeline.captions.writers import (
    Document,
    SubRip,
    WebVTT,
    caption_line,
    caption_lines,
    transcript_html,
    transcript_text,
)
from pipeline.captions.writers import paragraphs as transcript_paragraphs
from pipeline.errors import InputError
from pipeline.sidecar import speaker_name_problem

__all__ = ["Cue", "check_cues", "distribution"]

#: `HH:MM:SS.mmm` or `MM:SS.mmm` (1-3 decimals on a form), ASCII digits only, bounded length.
TIMESTAMP = re.compile(r"(?:([0-9]{1,2}):)?([0-9]{1,2}):([0-9]{2})[.,]([0-9]{1,3})")
#: Plain seconds as typed on the form: at most 6 digits and 3 decimals (no exponents, no inf).
SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,3})?")
#: No episode lasts a day: the bound for a time when the media's own length is unknown.
MAX_TIME_S = 24 * 3600.0
#: How far past the media's end a cue may run (containers round the duration).
END_SLACK_S = 0.5
TIMING_LINE = re.compile(r"^(\S+)\s+-->\s+(\S+)(?:\s+.*)?$")
VOICE = re.compile(r"^<v(?:\.[^\s>]*)?\s+([^>]*)>")
TAG = re.compile(r"</?[a-zA-Z][^>]*>|<\d[^>]*>")
#: A pause this long between cues starts a new paragraph in the TXT/HTML transcript.
PARAGRAPH_PAUSE_S = 2.0


def profile_for(settings: Any) -> Profile:
    """The configured caption profile (`captions.profile`)."""
    return get_profile(settings.captions.profile)


def low_confidence_threshold(settings: Any) -> float:
    return float(getattr(getattr(settings, "captions", None), "low_confidence", 0.5))


# --- timestamps -------------------------------------------------------------------------


def parse_time(text: str) -> float:
    """`01:02:03.500`, `02:03.500` or plain seconds (`123.5`) → seconds.

    Only what a caption file can hold: finite, 0 to 24 hours, millisecond precision, minutes
    and seconds below 60. `inf`, exponents and 300-digit numbers are refused here, before
    they can crash a writer or end up in a file.
    """
    text = text.strip()
    shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
    problem = (f"{shown!r} is not a time; write seconds (12.5) or HH:MM:SS.mmm (00:00:12.500), "
               f"between 0 and {MAX_TIME_S:.0f} seconds")
    m = TIMESTAMP.fullmatch(text)
    if m:
        hours, minutes, secs, ms = m.groups()
        if (hours is not None and int(minutes) >= 60) or int(secs) >= 60:
            raise InputError(problem)
        value = (int(hours or 0) * 3600 + int(minutes) * 60 + int(secs)
                 + int(ms.ljust(3, "0")) / 1000)
    elif SECONDS.fullmatch(text):
        value = float(text)
    else:
        raise InputError(problem)
    if value > MAX_TIME_S:
        raise InputError(problem)
    return value


def check_time(value: float, what: str, limit: float = MAX_TIME_S) -> None:
    """A time a caption file can hold: finite, not negative, within `limit`."""
    if not math.isfinite(value) or not 0 <= value <= limit:
        raise InputError(f"{what} is {value!r} seconds; a caption time must be between 0 and "
                         f"{limit:.3f} seconds")


def check_writable(cues: list[Cue]) -> None:
    """Every cue can be written: finite times within a day, never ending before it starts.

    The last check before a save, whatever built the list (edit, split, merge, a parsed file).
    """
    for k, cue in enumerate(cues, 1):
        check_time(cue.start, f"the start of cue {k}")
        check_time(cue.end, f"the end of cue {k}")
        if cue.end < cue.start:
            raise InputError(f"cue {k} ends ({cue.end:.3f} s) before it starts "
                             f"({cue.start:.3f} s); fix its times")


# --- WebVTT in and out ------------------------------------------------------------------


def _unescape(text: str) -> str:
    return html.unescape(TAG.sub("", text))


def parse_vtt(text: str) -> list[Cue]:
    """The cues of a WebVTT file (NOTE/STYLE/REGION blocks skipped, markup removed)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n{2,}", text.strip())
    if not blocks or not blocks[0].startswith("WEBVTT"):
        raise InputError("the caption file does not start with 'WEBVTT'; it is not WebVTT")
    cues: list[Cue] = []
    for block in blocks[1:]:
        lines = block.split("\n")
        if lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        if "-->" not in lines[0] and len(lines) > 1:
            lines = lines[1:]  # a cue identifier
        m = TIMING_LINE.match(lines[0].strip())
        if not m:
            continue
        start, end = parse_time(m.group(1)), parse_time(m.group(2))
        body = lines[1:]
        speaker = None
        if body:
            v = VOICE.match(body[0])
            if v:
                speaker = html.unescape(v.group(1).strip()) or None
        texts = tuple(t for t in (_unescape(line).strip() for line in body) if t)
        changed = speaker != (cues[-1].speaker if cues else None)
        if speaker and changed and texts and texts[0].startswith(f"{speaker}: "):
            # the visible name the writer adds where the speaker changes (and only there)
            texts = tuple(t for t in (texts[0][len(speaker) + 2:].strip(), *texts[1:]) if t)
        cues.append(Cue(start, end, texts, speaker))
    return cues


def render_vtt(cues: list[Cue]) -> str:
    return WebVTT().render(Document(title="", language="", cues=cues, words=[]))


def render_srt(cues: list[Cue]) -> str:
    return SubRip().render(Document(title="", language="", cues=cues, words=[]))


def paragraphs(cues: list[Cue]) -> list[list[Cue]]:
    """Cues grouped into paragraphs at long pauses and changes of speaker."""
    out: list[list[Cue]] = []
    for cue in cues:
        if out and cue.start - out[-1][-1].end < PARAGRAPH_PAUSE_S \
                and cue.speaker == out[-1][-1].speaker:
            out[-1].append(cue)
        else:
            out.append([cue])
    return out


def render_txt(cues: list[Cue], title: str) -> str:
    """The TXT transcript in the caption stage's paragraphs (by pause and speaker)."""
    return transcript_text(title, transcript_paragraphs(cues))


def render_html(cues: list[Cue], title: str, language: str) -> str:
    return transcript_html(title, language, transcript_paragraphs(cues))


def cues_json(cues: list[Cue]) -> list[dict[str, Any]]:
    return [{"start": round(c.start, 3), "end": round(c.end, 3), "text": c.text,
             "lines": list(c.lines), **({"speaker": c.speaker} if c.speaker else {})}
            for c in cues]


# --- edits ------------------------------------------------------------------------------


def wrap(text: str, max_chars: int) -> tuple[str, ...]:
    """Greedy line breaks for text that came without them (merges, single-line edits)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= max_chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return tuple(lines)


def clean_lines(text: str) -> tuple[str, ...]:
    """The lines a reviewer typed, each one caption line: no blank lines, no control bytes."""
    return tuple(caption_lines(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")))


def edit(cues: list[Cue], index: int, *, text: str, start: float, end: float,
         duration: float | None = None) -> list[Cue]:
    """Cue `index` with new text and timing; the list stays sorted by start time.

    `duration` is the length of the media the captions belong to: a cue may not run past it
    (by more than END_SLACK_S); unknown, the bound is MAX_TIME_S.
    """
    _check_index(cues, index)
    lines = clean_lines(text)
    if not lines:
        raise InputError(f"cue {index + 1} would be empty; type its text, or merge it with "
                         "a neighbour instead")
    check_time(start, f"the start of cue {index + 1}")
    check_time(end, f"the end of cue {index + 1}")
    if end <= start:
        raise InputError(f"cue {index + 1}: the end ({end:.3f} s) must be after the start "
                         f"({start:.3f} s)")
    if duration is not None and end > duration + END_SLACK_S:
        raise InputError(f"cue {index + 1} would end at {end:.3f} s, after the end of the "
                         f"media ({duration:.3f} s); choose times within the recording")
    out = list(cues)
    out[index] = replace(out[index], start=start, end=end, lines=lines)
    return sorted(out, key=lambda c: (c.start, c.end))


def split(cues: list[Cue], index: int, after_word: int, max_chars: int) -> list[Cue]:
    """Split cue `index` after its `after_word`-th word; time is shared by character count."""
    _check_index(cues, index)
    cue = cues[index]
    words = cue.text.split()
    if not 1 <= after_word < len(words):
        raise InputError(f"cue {index + 1} has {len(words)} word(s); split after a word "
                         f"between 1 and {len(words) - 1}")
    head, tail = " ".join(words[:after_word]), " ".join(words[after_word:])
    cut = cue.start + cue.duration * len(head) / (len(head) + len(tail))
    first = Cue(cue.start, round(cut, 3), wrap(head, max_chars), cue.speaker)
    second = Cue(round(cut, 3), cue.end, wrap(tail, max_chars), cue.speaker)
    return [*cues[:index], first, second, *cues[index + 1:]]


def merge(cues: list[Cue], index: int, max_chars: int) -> list[Cue]:
    """Merge cue `index` with the next one."""
    _check_index(cues, index)
    if index + 1 >= len(cues):
        raise InputError(f"cue {index + 1} is the last cue; there is no next cue to merge with")
    a, b = cues[index], cues[index + 1]
    merged = Cue(a.start, max(a.end, b.end), wrap(f"{a.text} {b.text}", max_chars),
                 a.speaker or b.speaker)
    return [*cues[:index], merged, *cues[index + 2:]]


def speakers(cues: list[Cue]) -> list[str]:
    """The speakers named in the captions, in order of first appearance."""
    return list(dict.fromkeys(c.speaker for c in cues if c.speaker))


def speaker_name(name: str) -> str:
    """A name typed on the review page, made one line and checked like a sidecar's."""
    name = caption_line(name)
    problem = speaker_name_problem(name)
    if problem:
        raise InputError(f"{problem}; type another name")
    return name


def rename_speaker(cues: list[Cue], old: str, new: str) -> list[Cue]:
    """Every cue of speaker `old` now said by `new` (everywhere in the captions). Renaming to
    a name already used merges the two: what to do when the recogniser split one voice."""
    if old not in speakers(cues):
        raise InputError(f"no cue is spoken by {old!r}; reload the page")
    new = speaker_name(new)
    return [replace(c, speaker=new) if c.speaker == old else c for c in cues]


def reassign(cues: list[Cue], index: int, speaker: str) -> list[Cue]:
    """Cue `index` said by `speaker` instead (a voice the diarizer gave to the wrong one)."""
    _check_index(cues, index)
    speaker = speaker_name(speaker)
    out = list(cues)
    out[index] = replace(out[index], speaker=speaker)
    return out


def _check_index(cues: list[Cue], index: int) -> None:
    if not 0 <= index < len(cues):
        raise InputError(f"there is no cue {index + 1} (the file has {len(cues)}); reload "
                         "the page")


def word_edit_distance(before: list[str], after: list[str]) -> int:
    """Levenshtein distance over words: substitutions + insertions + deletions.

    Reviewers' edits are local, so the common head and tail are cut off first; what is left
    runs row by row in numpy (the in-row insertion chain is a running minimum), which keeps a
    one-hour transcript's worst case well under a second.
    """
    head = 0
    while head < min(len(before), len(after)) and before[head] == after[head]:
        head += 1
    tail = 0
    while tail < min(len(before), len(after)) - head \
            and before[-1 - tail] == after[-1 - tail]:
        tail += 1
    a, b = before[head:len(before) - tail], after[head:len(after) - tail]
    if not a or not b:
        return max(len(a), len(b))
    ids: dict[str, int] = {}
    xs = np.array([ids.setdefault(w, len(ids)) for w in a])
    ys = np.array([ids.setdefault(w, len(ids)) for w in b])
    steps = np.arange(len(ys) + 1)
    previous = steps.copy()
    for i, x in enumerate(xs, 1):
        best = np.empty_like(previous)
        best[0] = i
        best[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (ys != x))
        # insertions along the row: current[j] = min_k<=j best[k] + (j - k)
        previous = np.minimum.accumulate(best - steps) + steps
    return int(previous[-1])
