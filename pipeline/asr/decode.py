"""Decode only the speech of a window of audio, with bounded work, reporting progress.

The transcribe stage hands each window of the recording (`pipeline.asr.audio.windows`) to
`transcribe_window`. It asks the VAD where the speech is (`pipeline.asr.vad`), gives the engine
one speech chunk at a time (at most whisper's 30 s window, so one chunk is one decode), and
shifts the words by the chunk's start, so every time stays in recording time. Each chunk gets
a token cap and a budget proportional to its length: however the decoder misbehaves, a chunk
costs a bounded number of decoding steps, so no input can take minutes per second of audio.
After each chunk the caller's `progress` hears how far into the window it got.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.asr.audio import SAMPLE_RATE
from pipeline.asr.engines import AsrOptions, Engine
from pipeline.asr.types import Segment
from pipeline.asr.vad import Span, VadSettings, speech_chunks

#: Fast English speech is about 5 tokens/s plus timestamps; twice that leaves room for
#: dense languages and punctuation while still ending a loop early.
TOKENS_PER_SECOND = 10
#: Whisper's own cap for one window (half its 448-token context).
MAX_TOKENS_PER_DECODE = 224
#: Decoding steps one chunk may spend, as a multiple of its token cap: the first decode,
#: a fallback or two, and the decode of a short remainder.
BUDGET_DECODES = 3
#: Words of the text so far carried into the next chunk's prompt when conditioning is on.
CARRIED_WORDS = 40


def token_cap(seconds: float) -> int:
    """Most tokens one decode of `seconds` of audio may produce."""
    return min(MAX_TOKENS_PER_DECODE, math.ceil(TOKENS_PER_SECOND * min(seconds, 30.0)) + 16)


def token_budget(seconds: float) -> int:
    """Most decoding steps (all windows and fallbacks) for `seconds` of audio."""
    windows = max(1, math.ceil(seconds / 30.0))
    return BUDGET_DECODES * windows * token_cap(seconds / windows)


@dataclass
class DecodeReport:
    """What gating and the guards did, for the transcript's info and the measurements."""

    chunks: int = 0
    speech_s: float = 0.0
    repetition_stops: int = 0
    budget_stops: int = 0
    remainder_skips: int = 0
    decode_steps: int = 0
    #: The language the engine reported last (detected, for multilingual models).
    language: str | None = None
    spans: list[tuple[float, float]] = field(default_factory=list)

    def add(self, info: dict[str, object]) -> None:
        for key in ("repetition_stops", "budget_stops", "remainder_skips", "decode_steps"):
            value = info.get(key, 0)
            setattr(self, key, getattr(self, key) + (value if isinstance(value, int) else 0))

    def to_dict(self) -> dict[str, object]:
        return {"chunks": self.chunks, "speech_s": round(self.speech_s, 3),
                "repetition_stops": self.repetition_stops, "budget_stops": self.budget_stops,
                "remainder_skips": self.remainder_skips, "decode_steps": self.decode_steps}


def prompt(glossary: str | None, before: list[Segment]) -> str | None:
    """The glossary prompt plus the end of what was said before (whisper reads the prompt as
    the speech just before, so the carried words come last)."""
    carried = [w.text for s in before[-8:] for w in s.words][-CARRIED_WORDS:]
    return " ".join(filter(None, [glossary, " ".join(carried)])) or None


def transcribe_window(engine: Engine, audio: np.ndarray, offset_s: float, options: AsrOptions,
                      *, vad: VadSettings | None, before: list[Segment], report: DecodeReport,
                      progress: Callable[[float], None] = lambda _s: None) -> list[Segment]:
    """Segments of this window's speech, in recording time (`offset_s` = the window's start).

    `vad` None decodes the whole window as one chunk (still with cap and budget). `before`
    is what was recognised so far; it is carried into the prompt only when
    `options.condition_on_previous_text` asks for it. `progress(s)` is called after each
    chunk with the recording time decoded up to.
    """
    spans = speech_chunks(audio, vad) if vad is not None else [Span(0, len(audio))]
    glossary = options.initial_prompt
    segments: list[Segment] = []
    for span in spans:
        piece = audio[span.start:span.end]
        carry = before + segments if options.condition_on_previous_text else []
        chunk_options = replace(options, initial_prompt=prompt(glossary, carry),
                                max_new_tokens=token_cap(span.seconds),
                                token_budget=token_budget(span.seconds))
        part = engine.transcribe(piece, chunk_options)
        report.chunks += 1
        report.speech_s += span.seconds
        report.spans.append((round(offset_s + span.start_s, 3), round(offset_s + span.end_s, 3)))
        report.add(part.info)
        report.language = part.language
        segments += [s.shifted(offset_s + span.start_s) for s in part.segments]
        progress(offset_s + span.end_s)
    progress(offset_s + len(audio) / SAMPLE_RATE)
    return segments
