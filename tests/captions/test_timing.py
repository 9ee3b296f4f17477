"""Word times against the audio: pauses found where they are, words moved onto the speech.

Signals are built in numpy with edges known to the sample; real speech comes from the shared
clips, joined with known pauses (`bench.captions.construct`) and measured on each clean clip.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import numpy as np

from bench.captions import SHORT_PARTS, construct, write_flac
from pipeline.asr.types import Word
from pipeline.captions.timing import (
    RATE,
    Pause,
    align_to_audio,
    audio_levels,
    find_pauses,
    levels,
    refine,
)


def _bursts(spans: list[tuple[float, float]], total: float, floor_db: float = -60.0,
            seed: int = 1) -> np.ndarray:
    """Noise bursts at about -20 dBFS (syllable-like: 4 Hz envelope) over a noise floor."""
    rng = np.random.default_rng(seed)
    n = round(total * RATE)
    out = rng.standard_normal(n) * 10 ** (floor_db / 20)
    t = np.arange(n) / RATE
    for a, b in spans:
        inside = (t >= a) & (t < b)
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * (t[inside] - a))
        out[inside] += rng.standard_normal(int(inside.sum())) * 0.1 * envelope
    return out.astype(np.float32)


def _edges(pauses: list[Pause]) -> list[tuple[float, float]]:
    return [(round(p.start, 2), round(p.end, 2)) for p in pauses]


def test_pauses_are_found_at_the_edges_of_sound() -> None:
    spans = [(1.0, 2.5), (3.1, 4.0), (4.15, 5.0), (6.5, 7.0)]  # 0.15 s is not a pause
    pauses = find_pauses(levels([_bursts(spans, 8.0)]))
    expected = [(0.0, 1.0), (2.5, 3.1), (5.0, 6.5), (7.0, 8.0)]
    found = [(p.start, p.end) for p in pauses]
    assert len(found) == 4, _edges(pauses)
    for (a, b), (x, y) in zip(expected, found, strict=True):
        assert abs(a - x) <= 0.03 and abs(b - y) <= 0.03, _edges(pauses)


def test_streaming_in_blocks_gives_the_same_levels() -> None:
    signal = _bursts([(0.5, 1.7)], 3.0)
    whole = levels([signal])
    pieces = levels([signal[:12345], signal[12345:20000], signal[20000:]])
    assert np.allclose(whole, pieces, atol=1e-3)
    assert len(whole) == round(3.0 * 100)


def test_a_noisier_stretch_is_judged_by_its_own_floor() -> None:
    quiet = _bursts([(1.0, 2.0), (3.0, 4.0)], 5.0, floor_db=-70)
    # A second half in a noisy hall: the floor 25 dB higher, its pauses still found.
    noisy = _bursts([(1.0, 2.0), (2.6, 4.0)], 5.0, floor_db=-45, seed=2)
    pauses = find_pauses(levels([np.concatenate([quiet, noisy])]))
    starts = [round(p.start, 1) for p in pauses]
    assert any(abs(s - 7.0) <= 0.05 for s in starts), _edges(pauses)  # the 0.6 s pause
    assert all(not (6.0 + 0.05 < p.start < 7.0 - 0.05) for p in pauses)  # speech stays speech


def test_continuous_sound_and_silence() -> None:
    assert find_pauses(levels([_bursts([(0.0, 4.0)], 4.0)])) == []
    assert [(p.start, p.end) for p in find_pauses(levels([np.zeros(RATE, np.float32)]))] \
        == [(0.0, 1.0)]
    assert find_pauses(np.zeros(0, np.float32)) == []


def _w(text: str, start: float, end: float) -> Word:
    return Word(text, start, end, 0.9)


def test_refine_moves_words_onto_the_speech() -> None:
    pauses = [Pause(0.0, 1.0), Pause(3.0, 4.5), Pause(6.0, 8.0)]
    words = [
        _w("Hello", 0.4, 1.5),  # swallowed the leading silence
        _w("there.", 1.5, 2.8),  # whisper ended early: the speech runs on to 3.0
        _w("How", 2.8, 4.8),  # swallowed the pause (more of its speech after it)
        _w("are", 4.8, 5.1),  # continuous speech: unchanged
        _w("you", 5.1, 5.5),
        _w("doing", 5.5, 5.8),
        _w("today?", 7.3, 7.3),  # squeezed against nothing, inside the pause, alone
    ]
    out = refine(words, pauses)
    assert [(w.start, w.end) for w in out[:6]] == [
        (1.0, 1.5), (1.5, 3.0), (4.5, 4.8), (4.8, 5.1), (5.1, 5.5), (5.5, 6.0)]
    assert out[6].start >= 8.0  # nearer to what follows (the end of the pause)
    assert [w.text for w in out] == [w.text for w in words]
    assert all(a.end <= b.start for a, b in itertools.pairwise(out))


def test_a_word_squeezed_after_its_neighbour_stays_with_it() -> None:
    """faster-whisper gives 'the' the whole pause and 'middle.' no time, at its far end."""
    pauses = [Pause(92.75, 95.76)]
    words = [_w("down", 91.94, 92.3), _w("the", 92.3, 94.38), _w("middle.", 94.38, 94.38),
             _w("Mend", 95.92, 96.16)]
    out = refine(words, pauses)
    assert out[1].end <= 92.75 and out[2].end <= 92.8  # still before the pause
    assert out[3].start == 95.76  # the next sentence starts where its sound does


def test_refine_never_moves_a_start_further_than_max_shift() -> None:
    pauses = [Pause(1.0, 2.0)]
    out = refine([_w("a", 0.2, 0.4), _w("late", 2.6, 3.0)], pauses, max_shift_s=0.5)
    assert out[0].end == 0.4 and out[1].start == 2.6  # too far: a cough, not these words


def test_real_speech_pauses_match_the_clips_own_edges(ffmpeg: str, tmp_path: Path) -> None:
    """Shared clips joined by known pauses: each clip's speech onset and offset (measured on
    the clean clip) is the edge of a pause found in the mixture with room tone."""
    recording = construct(SHORT_PARTS, ffmpeg)
    media = write_flac(ffmpeg, recording.samples, tmp_path / "joined.flac")
    pauses = find_pauses(audio_levels(ffmpeg, media))
    ends = np.array([p.end for p in pauses])
    starts = np.array([p.start for p in pauses])
    onset = [float(np.min(np.abs(ends - r.onset))) for r in recording.runs]
    offset = [float(np.min(np.abs(starts - r.offset))) for r in recording.runs]
    assert len(recording.runs) >= 5
    assert statistics.median(onset) <= 0.05 and max(onset) <= 0.2, onset
    assert statistics.median(offset) <= 0.1 and max(offset) <= 0.3, offset


def test_align_to_audio_without_words_reads_nothing(tmp_path: Path) -> None:
    assert align_to_audio([], "ffmpeg-not-needed", tmp_path / "missing.flac") == []
