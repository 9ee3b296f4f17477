"""Where the speech is: a noise-floor-relative activity detector that streams.

ffmpeg decodes the file to mono samples on a pipe (`pcm.stream_mono`); Python reads them in
one-second blocks and keeps only one RMS level per 10 ms window (an hour is 360,000 floats,
~3 MB), never the audio.

The threshold is relative to the recording's own noise floor (the quiet end of the level
distribution), not a fixed dBFS: a fixed -50 dBFS gate cuts word endings in a quiet recording
and keeps all the hiss of a noisy one. Word onsets and tails (plosives, fricatives) sit only a
few dB above the floor, so the cut keeps padding around the first and last sound.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio.pcm import stream_mono

log = logging.getLogger(__name__)

WINDOW_S = 0.010
#: Digital silence has no floor to speak of; clamp so the threshold stays meaningful.
MIN_LEVEL_DB = -100.0
#: Windows this quiet are digital silence (exact zeros, or the last bit of 16-bit audio
#: toggling): an export's gaps, not the room.
DIGITAL_SILENCE_DB = -96.0
#: A recording "has a room" when this long a stretch of it is neither digital silence nor
#: sound: room tone, which the floor is then measured from.
ROOM_TONE_S = 1.0


def window_levels(ffmpeg: str, path: Path, *, rate: int) -> np.ndarray:
    """RMS level (dBFS) of each 10 ms window of `path`'s first audio stream, mono."""
    win = max(round(rate * WINDOW_S), 1)
    levels: list[np.ndarray] = []
    carry = np.empty(0, dtype=np.float64)
    for block in stream_mono(ffmpeg, path, rate, block_samples=win * 100,  # one second
                             purpose="silence detection"):
        data = np.concatenate([carry, block])
        whole = len(data) // win * win
        if whole:
            frames = data[:whole].reshape(-1, win)
            levels.append(np.sqrt(np.mean(frames * frames, axis=1)))
        carry = data[whole:]
    if len(carry):
        levels.append(np.array([np.sqrt(np.mean(carry * carry))]))
    rms = np.concatenate(levels) if levels else np.zeros(0)
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), MIN_LEVEL_DB)


@dataclass(frozen=True)
class Activity:
    """What the detector found, in seconds of the analysed file."""

    duration_s: float
    floor_db: float
    speech_db: float
    threshold_db: float
    first_sound_s: float | None
    last_sound_s: float | None
    pauses: list[tuple[float, float]]  # silent stretches between sounds (start, end)


def detect(levels: np.ndarray, *, margin_db: float, min_sound_s: float,
           min_pause_s: float = 0.0) -> Activity:
    """Find first/last sound and the pauses between, relative to the measured noise floor.

    Floor: see `noise_floor`; speech level = 99.5th percentile of the window levels
    (sparse sound still registers). The threshold is
    `floor + margin_db`, but never more than half-way up to the speech level, so a noisy
    recording with little headroom above its hiss still has its quiet syllables kept.
    A "sound" must last `min_sound_s` (clicks and single pops do not count).
    """
    duration = len(levels) * WINDOW_S
    if len(levels) == 0:
        return Activity(0.0, MIN_LEVEL_DB, MIN_LEVEL_DB, MIN_LEVEL_DB, None, None, [])
    floor = noise_floor(levels, margin_db)
    speech = float(np.percentile(levels, 99.5))
    threshold = min(floor + margin_db, (floor + speech) / 2)
    loud = levels > threshold
    min_run = max(round(min_sound_s / WINDOW_S), 1)
    runs = _runs(loud)
    sounds = [(a, b) for a, b in runs if b - a >= min_run]
    if not sounds or speech - floor < 6.0:
        # No clear activity above the floor (a constant tone, continuous noise): cut nothing.
        return Activity(duration, floor, speech, threshold, None, None, [])
    pauses: list[tuple[float, float]] = []
    for (_, end_a), (start_b, _) in itertools.pairwise(sounds):
        gap = (start_b - end_a) * WINDOW_S
        if min_pause_s and gap > min_pause_s:
            pauses.append((end_a * WINDOW_S, start_b * WINDOW_S))
    return Activity(duration, floor, speech, threshold, sounds[0][0] * WINDOW_S,
                    sounds[-1][1] * WINDOW_S, pauses)


def noise_floor(levels: np.ndarray, margin_db: float) -> float:
    """The recording's noise floor (dBFS): the 10th percentile of its window levels, leaving
    out digital silence when the rest shows a room.

    Clips spliced from exports often hold seconds of exact zeros. Counted in, they put the
    floor at -100 dBFS; the room tone of a lead-in then counts as sound and nothing is
    trimmed. Measured without them, the floor is the room's, provided the recording has one:
    a stretch of ROOM_TONE_S that is neither digital silence nor sound by the threshold that
    floor gives. A recording without (synthetic speech, a noise gate: zeros between words and
    nothing else quiet) keeps digital silence as its floor, because its quietest audible
    windows are soft syllables, which must stay sound.
    """
    everything = float(np.percentile(levels, 10))
    audible = levels > DIGITAL_SILENCE_DB
    if audible.all() or not audible.any():
        return everything
    floor = float(np.percentile(levels[audible], 10))
    speech = float(np.percentile(levels, 99.5))
    threshold = min(floor + margin_db, (floor + speech) / 2)
    room = max((b - a for a, b in _runs(audible & (levels <= threshold))), default=0)
    return floor if room * WINDOW_S >= ROOM_TONE_S else everything


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs in `mask`."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
