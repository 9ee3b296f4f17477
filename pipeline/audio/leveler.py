"""A speech leveler: slow gain riding on speech only, so speakers and sections match.

A meeting-room recording has one speaker near the microphone and one far from it; a linear
gain keeps the far one 10 dB quieter. The leveler computes a gain curve from the loudness
the analysis pass already measured (ebur128's 100 ms frame log, `LoudnessSeries`) and the
render applies it sample-accurately with ffmpeg (`amultiply` with an envelope of 100 values
a second, upsampled by `aresample`), before the existing integrated target and true-peak
ceiling. Nothing holds the audio: an hour's curve is 36,000 floats.

How the curve is made:

1. **Speech frames**: momentary loudness above the recording's own noise floor (10th
   percentile + 10 dB, at most half-way to the loud end, as trim does) *and* within 15 LU
   of the loudness around it (±3 s), so pauses, breaths and room noise between phrases are
   not speech even when the room is loud.
2. **Local speech level**: the power mean of the momentary loudness of the speech frames
   within ±3 s (at least 0.5 s of speech), i.e. "how loud is the talking around here".
3. **Gain** = the recording's typical speech level (median of the local levels) minus the
   local level, bounded to ±`max_gain_db`: the far speaker comes up, the near one down.
4. **Frozen in pauses**: a frame that is not speech takes the lower of the gains of the
   speech before and after it, so room noise in a pause is never pulled up (no pumping).
5. **Smoothed** by a 1 s moving average, so gain changes are glides, not steps.

Why this and not ffmpeg's own filters — measured on the sound bench's inputs (JFK at
-20 LUFS alternating with an LJSpeech voice at -30 LUFS over -60 dBFS room tone; JFK with a
25 s pause of that room tone; see `bench/sound.py`): `dynaudnorm` (defaults) left the two
voices 12.6 LU apart (its 15 s Gaussian window averages across speaker turns, and it
normalises peaks, not loudness) and raised the room tone in the pause by 11.9 dB relative
to the speech; `speechnorm` (defaults) left them 9.9 LU apart, and with stronger expansion
(`e=6.25:r=0.00001:l=1`) 8.4 LU apart with the pause 4.1 dB up. This curve: 0.8 LU apart,
the pause 2.1 dB *down* relative to the speech. The window was chosen the same way (spread /
gain range on one steady speaker): ±1.5 s 0.6 LU / ±4.2 dB, ±2 s 0.5 LU / ±4 dB, ±3 s
0.8 LU / -3.0..+2.7 dB, ±4 s 2.1 LU, ±5 s 4.0 LU: ±3 s is the longest window that still
settles within an 8 s turn, and it rides a single speaker's phrases least among those that
do. The power mean (rather than a median) as the local level tracks loudness the way BS.1770
measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio.loudness import FRAME_S, MOMENTARY_S, SILENT_LUFS, LoudnessSeries

#: Half-width of the window the local speech level is measured over.
WINDOW_S = 3.0
#: Moving average applied to the gain curve (full width).
SMOOTH_S = 1.0
#: Speech is at least this far above the noise floor...
FLOOR_MARGIN_DB = 10.0
#: ...and within this much of the loudness around it.
RELATIVE_GATE_LU = 15.0
#: Less speech than this in the window: the local level is unknown there (gain held).
MIN_SPEECH_S = 0.5
#: Envelope rate handed to ffmpeg (values per second).
ENVELOPE_RATE = 100


@dataclass(frozen=True)
class SpeechFrames:
    """Which frames of a `LoudnessSeries` are speech, and the levels that decided it."""

    mask: np.ndarray  # bool per frame
    floor_lufs: float
    gate_lufs: float


def _window_sum(values: np.ndarray, half: int) -> np.ndarray:
    """Sum of `values[i-half : i+half+1]` for every i (cumulative sums: O(n) for any width)."""
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    hi = np.minimum(idx + half + 1, len(values))
    lo = np.maximum(idx - half, 0)
    return csum[hi] - csum[lo]


def _valid(series: LoudnessSeries) -> np.ndarray:
    """Frames whose momentary loudness covers a full 400 ms (ebur128 fills the first ones)."""
    return (series.t >= MOMENTARY_S - 1e-3) & np.isfinite(series.momentary)


def speech_frames(series: LoudnessSeries) -> SpeechFrames:
    """Frames that are speech: above the noise floor and near the loudness around them."""
    valid = _valid(series)
    m = np.maximum(np.where(valid, series.momentary, -120.0), -120.0)
    if not valid.any():
        return SpeechFrames(np.zeros(len(m), bool), -120.0, -120.0)
    floor = float(np.percentile(m[valid], 10))
    loud = float(np.percentile(m[valid], 99))
    gate = max(min(floor + FLOOR_MARGIN_DB, (floor + loud) / 2), SILENT_LUFS)
    above = valid & (m > gate)
    half = round(WINDOW_S / FRAME_S)
    energy = _window_sum(np.where(above, 10 ** (m / 10), 0.0), half)
    count = _window_sum(above.astype(float), half)
    with np.errstate(divide="ignore", invalid="ignore"):
        around = 10 * np.log10(energy / count)
    mask = above & (m > around - RELATIVE_GATE_LU)
    return SpeechFrames(mask, floor, gate)


@dataclass(frozen=True)
class GainCurve:
    """The leveler's gain (dB) at the centre of each analysis frame."""

    t: np.ndarray  # seconds, centre of each frame's 400 ms block
    gain_db: np.ndarray
    speech: np.ndarray  # bool: the frame is speech (its gain was computed, not held)
    reference_lufs: float  # the speech level the curve levels to

    @classmethod
    def flat(cls, series: LoudnessSeries) -> GainCurve:
        n = len(series.t)
        return cls(series.t - MOMENTARY_S / 2, np.zeros(n), np.zeros(n, bool), float("nan"))

    @property
    def is_flat(self) -> bool:
        return not np.any(np.abs(self.gain_db) > 1e-6)

    def at(self, times: np.ndarray) -> np.ndarray:
        """Gain (dB) at arbitrary times (linear between frames, held beyond the ends)."""
        if len(self.t) == 0:
            return np.zeros(len(times))
        return np.interp(times, self.t, self.gain_db)

    def speech_range_db(self) -> tuple[float, float]:
        """Lowest and highest gain applied to speech (0, 0 when nothing was levelled)."""
        g = self.gain_db[self.speech] if self.speech.any() else self.gain_db
        if len(g) == 0:
            return 0.0, 0.0
        return float(g.min()), float(g.max())

    def write_envelope(self, path: Path, duration_s: float) -> None:
        """The curve as raw float32 linear gains, `ENVELOPE_RATE` a second, for ffmpeg
        (`-f f32le -ar 100 -ac 1 -i path`). One second past the end, so it never runs out."""
        times = np.arange(0.0, duration_s + 1.0, 1.0 / ENVELOPE_RATE)
        (10 ** (self.at(times) / 20)).astype("<f4").tofile(path)


def plan(series: LoudnessSeries, *, max_gain_db: float) -> GainCurve:
    """The gain curve that brings every stretch of speech to the recording's typical level."""
    frames = speech_frames(series)
    speech = frames.mask
    centre = series.t - MOMENTARY_S / 2
    if speech.sum() < MIN_SPEECH_S / FRAME_S or max_gain_db <= 0:
        return GainCurve.flat(series)
    m = series.momentary
    half = round(WINDOW_S / FRAME_S)
    energy = _window_sum(np.where(speech, 10 ** (np.where(speech, m, 0.0) / 10), 0.0), half)
    count = _window_sum(speech.astype(float), half)
    known = speech & (count >= MIN_SPEECH_S / FRAME_S)
    local = np.full(len(m), np.nan)
    local[known] = 10 * np.log10(energy[known] / count[known])
    if not known.any():
        return GainCurve.flat(series)
    reference = float(np.median(local[known]))
    gain = np.full(len(m), np.nan)
    gain[known] = np.clip(reference - local[known], -max_gain_db, max_gain_db)
    gain = _hold_in_pauses(gain)
    gain = _smooth(gain, round(SMOOTH_S / FRAME_S / 2))
    return GainCurve(centre, gain, known, reference)


def _hold_in_pauses(gain: np.ndarray) -> np.ndarray:
    """Fill unknown frames with the lower of the nearest known gains before and after."""
    idx = np.arange(len(gain))
    known = ~np.isnan(gain)
    prev = np.maximum.accumulate(np.where(known, idx, -1))
    nxt = np.minimum.accumulate(np.where(known, idx, len(gain))[::-1])[::-1]
    before = np.where(prev >= 0, gain[np.clip(prev, 0, None)], np.nan)
    after = np.where(nxt < len(gain), gain[np.clip(nxt, None, len(gain) - 1)], np.nan)
    filled = np.fmin(before, after)
    return np.where(known, gain, np.where(np.isnan(filled), 0.0, filled))


def _smooth(gain: np.ndarray, half: int) -> np.ndarray:
    if half <= 0 or len(gain) == 0:
        return gain
    padded = np.pad(gain, (half, half), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.convolve(padded, kernel, mode="valid")


def gated_integrated(momentary: np.ndarray) -> float:
    """BS.1770 integrated loudness from 400 ms block loudness at 100 ms hops (75 % overlap):
    absolute gate -70 LUFS, relative gate 10 LU below the mean of what passed."""
    m = momentary[np.isfinite(momentary)]
    m = m[m > -70.0]
    if len(m) == 0:
        return -70.0
    relative = 10 * np.log10(np.mean(10 ** (m / 10))) - 10.0
    kept = m[m > relative]
    return float(10 * np.log10(np.mean(10 ** (kept / 10))))


def predict(series: LoudnessSeries, curve: GainCurve) -> tuple[float, float]:
    """Integrated loudness and true peak after applying `curve` (before any linear gain).

    Exact up to the gain's change within one block: the curve moves by well under 1 dB per
    400 ms, so the gated blocks and the frame peaks simply move by the gain at their time.
    """
    valid = _valid(series)
    block_gain = curve.at(series.t - MOMENTARY_S / 2)
    integrated = gated_integrated(np.where(valid, series.momentary + block_gain, -120.0))
    frame_gain = curve.at(series.t - FRAME_S / 2)
    peaks = series.frame_peak + frame_gain
    peaks = peaks[np.isfinite(peaks)]
    peak = float(peaks.max()) if len(peaks) else series.loudness.true_peak
    return integrated, peak
