"""Recognise the episode's speech into words with times and confidences.

Reads the content-only master (`master_audio`), so transcript times are content times; the
caption stage places them in the deliverables through the episode's Timeline.
Audio is decoded to 16 kHz mono by our own ffmpeg and streamed in windows of
`window_minutes`, cut at quiet moments, so an hour or three need no more memory than ten
minutes; within a window only what the VAD calls speech is decoded, chunk by chunk, with
bounded work (`pipeline.asr.decode`), and `ctx.progress` hears the seconds done. The model is
loaded once per process (`ctx.resources`) with the worker's share of the cores
(`pipeline.asr.threads`). Guards then drop likely hallucinations, and glossary terms (show +
sidecar) are used both as the decoder's prompt and to respell near misses. Silent or
music-only input yields an empty transcript and a warning.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pipeline.artifacts import Artifact
from pipeline.asr.audio import SAMPLE_RATE, dbfs, energy, stream_16k_mono, windows
from pipeline.asr.decode import DecodeReport, transcribe_window
from pipeline.asr.engines import AsrOptions, Engine, get_engine
from pipeline.asr.guards import GuardSettings, apply_glossary, drop_hallucinations, glossary_prompt
from pipeline.asr.threads import log_plan_once, plan_threads
from pipeline.asr.types import Segment, Transcript
from pipeline.asr.vad import VadSettings
from pipeline.errors import InputError, PipelineError
from pipeline.fsutil import atomic_write_text
from pipeline.media import probe
from pipeline.models import Job, TranscriptionResult
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.MASTER_AUDIO,)
MAKES = (Artifact.TRANSCRIPT,)
#: How far either side of a window's nominal end the cut may move to find a quiet moment.
SEARCH_S = 30
def glossary_terms(job: Job, ctx: Context) -> list[str]:
    """Show glossary plus the sidecar's, without case-insensitive duplicates."""
    try:
        show_terms = list(ctx.settings.show(job.show).glossary)
    except KeyError:
        show_terms = []
    seen: set[str] = set()
    terms = []
    for term in [*show_terms, *job.metadata.glossary]:
        if term.strip() and term.lower() not in seen:
            seen.add(term.lower())
            terms.append(term.strip())
    return terms


def _language(job: Job, ctx: Context) -> str:
    configured = ctx.settings.transcribe.language
    if configured:
        return configured
    try:
        return ctx.settings.show(job.show).language.split("-")[0]
    except KeyError:
        return "en"


def _expected_seconds(source: Path) -> float:
    """The input's duration, the total that progress counts towards (decoding gives the exact
    figure only at the end)."""
    try:
        return max(probe(source).duration_s or 0.0, 0.0) or 1.0
    except InputError:
        return 1.0  # ffmpeg's own error is raised by the decode that follows


def run(job: Job, ctx: Context) -> Job:
    settings = ctx.settings.transcribe
    ws = ctx.workspace
    source = ctx.input(Artifact.MASTER_AUDIO)
    shown = ws.rel(source)
    terms = glossary_terms(job, ctx)
    engine: Engine | None = None
    threads = plan_threads(settings.threads, ctx.settings.runner.worker_count)
    base = AsrOptions(
        language=_language(job, ctx), initial_prompt=glossary_prompt(terms),
        beam_size=settings.beam_size, no_speech_threshold=settings.no_speech_threshold,
        compression_ratio_threshold=settings.compression_ratio_threshold,
        logprob_threshold=settings.logprob_threshold,
        condition_on_previous_text=settings.condition_on_previous_text,
        temperatures=tuple(settings.temperatures),
        hallucination_silence_threshold=settings.hallucination_silence_s or None)
    vad = VadSettings(threshold=settings.vad_threshold) if settings.vad else None
    decoding = DecodeReport()
    expected = _expected_seconds(source)

    def progress(done_s: float) -> None:
        ctx.progress(min(done_s, expected), expected)

    length = round(settings.window_minutes * 60 * SAMPLE_RATE)
    segments: list[Segment] = []
    samples, total_energy, heard, seconds, count = 0, 0.0, 0, 0.0, 0
    progress(0.0)
    for offset, piece in windows(stream_16k_mono(ctx.ffmpeg, source), length,
                                 min(length // 4, SEARCH_S * SAMPLE_RATE)):
        count += 1
        samples = offset + len(piece)
        piece_energy = energy(piece)
        total_energy += piece_energy
        if dbfs(piece_energy, len(piece)) < settings.silence_dbfs:
            progress(samples / SAMPLE_RATE)
            continue  # nothing to recognise: no model load, no hallucinated words
        heard += 1
        if engine is None:
            log_plan_once(threads)
            engine = get_engine(ctx.resources, settings.engine, settings.model,
                                ws.abs(settings.models_dir), threads=threads.threads,
                                compute_type=settings.compute_type)
        started = time.monotonic()
        try:
            segments += transcribe_window(engine, piece, offset / SAMPLE_RATE, base, vad=vad,
                                          before=segments, report=decoding,
                                          progress=progress)
        except (RuntimeError, ValueError) as exc:
            raise PipelineError(f"{settings.engine} failed on {shown} ({exc}); try "
                                "`learncast retry`, or switch transcribe.engine") from exc
        seconds += time.monotonic() - started
    duration = samples / SAMPLE_RATE
    ctx.progress(duration, duration)
    language = decoding.language or base.language or "en"
    transcript = Transcript(language=language, duration_s=duration, segments=tuple(segments))
    dropped: list[dict[str, object]] = []
    if not heard:
        log.warning("[transcribe] %s: the audio is silent (%.0f dBFS); the transcript is empty",
                    job.id, dbfs(total_energy, samples))
    else:
        guards = GuardSettings(no_speech_threshold=settings.no_speech_threshold,
                               logprob_threshold=settings.logprob_threshold,
                               compression_ratio_threshold=settings.compression_ratio_threshold)
        transcript, report = drop_hallucinations(transcript, guards)
        dropped = list(report.dropped)
    transcript, glossary = apply_glossary(transcript, terms, settings.glossary_similarity)
    words = transcript.words
    if not words:
        log.warning("[transcribe] %s: no speech recognised in %s (%.1f s); captions and "
                    "transcript will be empty — check that the recording has speech",
                    job.id, shown, duration)
    info = {"engine": settings.engine, "model": settings.model,
            "model_source": engine.model.source if engine else "not loaded",
            "windows": count, "vad": settings.vad, "threads": threads.threads,
            "decoding": decoding.to_dict(), "glossary": glossary.to_dict(),
            "dropped_segments": dropped}
    data = {**transcript.to_dict(), **info}
    dest = ws.job_dir(job.id) / "transcript.json"
    atomic_write_text(dest, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    log.info("[transcribe] %s: %d words in %.1f s of audio (%s, RTF %.3f)", job.id,
             len(words), duration, settings.engine, seconds / duration if duration else 0.0)
    result = TranscriptionResult(engine=settings.engine, model=settings.model,
                                 model_source=str(info["model_source"]), language=language)
    return job.with_file(Artifact.TRANSCRIPT, ws.rel(dest)).with_results(
        transcription=result).with_measurements(
        transcript_words=len(words),
        asr_windows=count,
        asr_chunks=decoding.chunks,
        asr_speech_s=round(decoding.speech_s, 3),
        asr_loop_stops=decoding.repetition_stops + decoding.budget_stops,
        asr_threads=threads.threads,
        asr_seconds=round(seconds, 3),
        asr_rtf=round(seconds / duration, 4) if duration else 0.0,
        asr_dropped_segments=len(dropped),
        glossary_terms=len(terms),
        glossary_terms_found=glossary.found,
        glossary_corrections=len(glossary.corrections),
        speech_detected=bool(words),
    )
