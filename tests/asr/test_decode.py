"""Gated decoding: only speech is decoded, words stay in recording time, work is bounded."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pipeline.asr.audio import SAMPLE_RATE
from pipeline.asr.decode import (
    MAX_TOKENS_PER_DECODE,
    DecodeReport,
    token_budget,
    token_cap,
    transcribe_window,
)
from pipeline.asr.engines import AsrOptions
from pipeline.asr.vad import VadSettings
from tests.asr.fixtures import SpeechWithPauses, normalise_text, wer

ENGINES = ["openai-whisper", "faster-whisper"]


def test_token_cap_and_budget_grow_with_the_audio_and_stop_at_whispers_window() -> None:
    assert token_cap(2.0) == 36 and token_cap(30.0) == MAX_TOKENS_PER_DECODE
    assert token_cap(600.0) == MAX_TOKENS_PER_DECODE
    assert token_budget(2.0) == 3 * 36
    assert token_budget(600.0) == 20 * 3 * MAX_TOKENS_PER_DECODE  # 20 windows of 30 s


@pytest.mark.parametrize("engine", ENGINES)
def test_words_stay_in_recording_time(engine: str, load_asr: Callable[[str], Any],
                                      speech_with_pauses: SpeechWithPauses) -> None:
    """Leading room tone, a pause, a second voice; the window itself starts 100 s into the
    recording. Every word must fall where its recording was placed, at the same offset as
    when that recording is transcribed alone."""
    asr = load_asr(engine)
    data = speech_with_pauses
    progress: list[float] = []
    report = DecodeReport()
    segments = transcribe_window(asr, data.audio, 100.0, AsrOptions(), vad=VadSettings(),
                                 before=[], report=report, progress=progress.append)
    words = [w for s in segments for w in s.words]
    assert report.chunks == 2 and report.speech_s < len(data.audio) / SAMPLE_RATE - 6.0
    (a0, a1), (b0, b1) = data.placed
    first = [w for w in words if w.start < 100 + b0 - 1]
    second = [w for w in words if w.start >= 100 + b0 - 1]
    assert wer(data.references[0], " ".join(w.text for w in first)) <= 0.1
    assert wer(data.references[1], " ".join(w.text for w in second)) <= 0.3
    # whisper starts a chunk's first word where the chunk starts (VAD padding: 0.2 s early)
    assert all(100 + a0 - 0.3 <= w.start and w.end <= 100 + a1 + 0.05 for w in first)
    assert all(100 + b0 - 0.3 <= w.start and w.end <= 100 + b1 + 0.05 for w in second)
    for onset, word in zip(data.onsets, (first[0], second[0]), strict=True):
        assert abs(word.start - (100 + onset)) <= 0.35
    for prev, word in itertools.pairwise(words):
        assert prev.start <= word.start
    # the same recording alone: its words, shifted by where it was placed
    start = round(a0 * SAMPLE_RATE)
    alone = asr.transcribe(data.audio[start:round(a1 * SAMPLE_RATE)], AsrOptions()).words
    assert [normalise_text(w.text) for w in alone] == [normalise_text(w.text) for w in first]
    diffs = [abs((w.start - 100 - a0) - v.start) for w, v in zip(first, alone, strict=True)]
    assert float(np.median(diffs)) <= 0.1
    # progress: after each chunk, then the window's end, never backwards
    assert progress == sorted(progress) and len(progress) == 3
    assert progress[-1] == pytest.approx(100 + len(data.audio) / SAMPLE_RATE)


def test_without_vad_the_window_is_one_chunk(load_asr: Callable[[str], Any],
                                             speech_with_pauses: SpeechWithPauses) -> None:
    report = DecodeReport()
    segments = transcribe_window(load_asr("faster-whisper"), speech_with_pauses.audio, 0.0,
                                 AsrOptions(), vad=None, before=[], report=report)
    assert report.chunks == 1 and report.spans == [(0.0, round(len(
        speech_with_pauses.audio) / SAMPLE_RATE, 3))]
    said = " ".join(speech_with_pauses.references)
    assert wer(said, " ".join(s.text for s in segments)) <= 0.1
