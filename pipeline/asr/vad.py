"""Where the speech is: gate non-speech out before any decoding.

Whisper decodes whatever it is given, and a fraction of a second of room tone after the last
word is enough for it to loop ("Thank you very much for your time...") through every
temperature of its fallback: minutes spent on a 12-second clip. So neither engine is given
audio that no voice activity detector calls speech. The detector is Silero VAD, the ONNX model
that the faster-whisper wheel ships (`faster_whisper/assets/silero_vad_v6.onnx`, run by
onnxruntime on one thread): no download, the same regions for both engines.

Speech regions are padded a little (`pad_s`), and neighbours separated by short pauses are
merged into chunks of at most `max_chunk_s` (whisper's 30 s window), so a chunk is decoded in
one window and the pauses between sentences stay in (whisper punctuates better with them);
long pauses, leading and trailing room tone are never decoded. Chunk times are samples of the
audio given, so the caller shifts words by the chunk's start and they stay in recording time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from pipeline.asr.audio import SAMPLE_RATE
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

#: Silero scores 512-sample frames (32 ms at 16 kHz).
FRAME = 512
_LOCK = threading.Lock()


@dataclass(frozen=True)
class VadSettings:
    """How speech is found and grouped into decoding chunks (times in seconds)."""

    threshold: float = 0.5
    #: A pause must last this long to end a speech region.
    min_silence_s: float = 0.3
    #: Regions shorter than this (a click, a cough) are not speech.
    min_speech_s: float = 0.15
    #: Audio kept before and after each region, so no word's edge is cut.
    pad_s: float = 0.2
    #: Regions closer than this are decoded together (the pause stays in the chunk).
    merge_gap_s: float = 2.0
    #: Longest chunk: whisper's window, so one chunk is one decode.
    max_chunk_s: float = 30.0


@dataclass(frozen=True)
class Span:
    """[start, end) in samples of the audio the VAD was given."""

    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def _model() -> object:
    """The Silero model from the faster-whisper wheel, loaded once per process."""
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError as exc:  # pragma: no cover - faster-whisper is a dependency
        raise PipelineError("voice activity detection needs the faster-whisper package (it "
                            "ships the Silero VAD model) and onnxruntime; run `make setup`"
                            ) from exc
    try:
        return get_vad_model()
    except Exception as exc:
        raise PipelineError(f"the Silero VAD model shipped with faster-whisper could not be "
                            f"loaded ({exc}); reinstall faster-whisper and onnxruntime "
                            "(`make setup`), or set transcribe.vad = false") from exc


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero's speech probability for each 512-sample frame of `audio` (16 kHz mono)."""
    if not len(audio):
        return np.zeros(0, np.float32)
    padded = np.pad(np.asarray(audio, np.float32), (0, -len(audio) % FRAME))
    model = _model()
    with _LOCK:  # one ONNX session per process; its recurrent state is per call
        probs = model(padded)  # type: ignore[operator]
    return np.asarray(probs, np.float32).reshape(-1)


def speech_regions(probs: np.ndarray, total: int, settings: VadSettings = VadSettings()
                   ) -> list[Span]:
    """Unpadded regions where the detector hears speech, with hysteresis: a region starts at
    a frame above `threshold` and ends once `min_silence_s` stays below `threshold - 0.15`.
    `probs` are `speech_probabilities` of audio `total` samples long."""
    low = max(settings.threshold - 0.15, 0.01)
    min_silence = max(1, int(settings.min_silence_s * SAMPLE_RATE / FRAME))
    regions: list[Span] = []
    start: int | None = None
    quiet = 0
    for i, p in enumerate(probs.tolist()):
        if start is None:
            if p >= settings.threshold:
                start, quiet = i, 0
            continue
        if p >= low:
            quiet = 0
            continue
        quiet += 1
        if quiet >= min_silence:
            regions.append(Span(start * FRAME, (i - quiet + 1) * FRAME))
            start = None
    if start is not None:
        regions.append(Span(start * FRAME, len(probs) * FRAME))
    min_len = settings.min_speech_s * SAMPLE_RATE
    return [Span(r.start, min(r.end, total)) for r in regions if r.end - r.start >= min_len]


def chunks(regions: list[Span], total: int, settings: VadSettings = VadSettings(),
           probs: np.ndarray | None = None) -> list[Span]:
    """Padded regions merged across short pauses into chunks of at most `max_chunk_s`.

    A region longer than that (a speaker who never pauses for `min_silence_s`) is cut at its
    least speech-like frame in the last third of each chunk: usually a breath between words.
    """
    pad = round(settings.pad_s * SAMPLE_RATE)
    gap = round(settings.merge_gap_s * SAMPLE_RATE)
    longest = round(settings.max_chunk_s * SAMPLE_RATE)
    out: list[Span] = []
    for region in regions:
        span = Span(max(0, region.start - pad), min(total, region.end + pad))
        for part in _split(span, longest, probs):
            if out and part.start - out[-1].end <= gap and part.end - out[-1].start <= longest:
                out[-1] = Span(out[-1].start, part.end)
            elif out and part.start < out[-1].end:  # paddings overlap: share the middle
                middle = (part.start + out[-1].end) // 2
                out[-1] = Span(out[-1].start, middle)
                out.append(Span(middle, part.end))
            else:
                out.append(part)
    return out


def _split(span: Span, longest: int, probs: np.ndarray | None) -> list[Span]:
    parts: list[Span] = []
    start = span.start
    while span.end - start > longest:
        lo, hi = (start + 2 * longest // 3) // FRAME, (start + longest) // FRAME
        window = probs[lo:hi] if probs is not None else np.zeros(0)
        cut = (lo + int(np.argmin(window))) * FRAME if len(window) else start + longest
        parts.append(Span(start, cut))
        start = cut
    parts.append(Span(start, span.end))
    return parts


def speech_chunks(audio: np.ndarray, settings: VadSettings = VadSettings()) -> list[Span]:
    """What to decode in `audio`: VAD regions, padded and merged (see the module docstring)."""
    probs = speech_probabilities(audio)
    return chunks(speech_regions(probs, len(audio), settings), len(audio), settings, probs)
