"""Voice activity gating: what is decoded and what never is."""

from __future__ import annotations

import numpy as np

from pipeline.asr.audio import SAMPLE_RATE
from pipeline.asr.vad import FRAME, Span, VadSettings, chunks, speech_chunks, speech_regions
from tests.asr.fixtures import SpeechWithPauses, room_tone

S = SAMPLE_RATE


def test_room_tone_is_never_decoded(speech_with_pauses: SpeechWithPauses) -> None:
    audio, placed = speech_with_pauses.audio, speech_with_pauses.placed
    found = speech_chunks(audio)
    assert len(found) == 2  # the 4 s pause splits them; leading and trailing tone are out
    for span, (start, end) in zip(found, placed, strict=True):
        assert start - 0.25 <= span.start_s and span.end_s <= end + 0.4
        assert span.start_s <= start + 0.5  # JFK's first word is 0.3 s into his clip
    assert found[-1].end_s < len(audio) / S - 0.2  # most of the trailing tone is left out


def test_silence_and_tone_give_no_chunks() -> None:
    assert speech_chunks(np.zeros(5 * S, np.float32)) == []
    assert speech_chunks(room_tone(4.0, dbfs=-45.0)) == []
    t = np.arange(5 * S) / S
    assert speech_chunks((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)) == []


def test_short_pauses_stay_inside_a_chunk_long_ones_split() -> None:
    regions = [Span(1 * S, 3 * S), Span(4 * S, 6 * S), Span(10 * S, 12 * S)]
    merged = chunks(regions, 20 * S, VadSettings(pad_s=0.2, merge_gap_s=2.0))
    assert [(c.start_s, c.end_s) for c in merged] == [(0.8, 6.2), (9.8, 12.2)]


def test_chunks_never_exceed_whispers_window() -> None:
    regions = [Span(i * 10 * S, i * 10 * S + 9 * S) for i in range(10)]  # 9 s, 1 s pauses
    merged = chunks(regions, 100 * S)
    assert all(c.seconds <= 30.0 for c in merged)
    assert merged[0].start == 0 and merged[-1].end == 100 * S - 1 * S + round(0.2 * S)


def test_a_long_monologue_is_cut_where_speech_is_least_likely() -> None:
    frames = 70 * S // FRAME
    probs = np.full(frames, 0.9, np.float32)
    probs[round(25.0 * S / FRAME)] = 0.2  # a breath 25 s in
    probs[round(52.0 * S / FRAME)] = 0.3
    [region] = speech_regions(probs, frames * FRAME)
    parts = chunks([region], frames * FRAME, probs=probs)
    cuts = [round(p.start_s, 1) for p in parts[1:]]
    assert cuts == [25.0, 52.0] and all(p.seconds <= 30.0 for p in parts)
    assert parts[0].start == 0 and parts[-1].end == frames * FRAME
