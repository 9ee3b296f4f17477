"""The sound report: what the master's production did to one episode, in figures a producer
can check (and the review page shows).

Everything is computed from two ebur128 frame logs (`LoudnessSeries`) of the same timeline —
the audio as it came in and the master — so no audio is decoded for it:

- `loudness_range_lu`: EBU R128 LRA before and after (how much the loudness wanders);
- `section_spread_lu`: the timeline cut into 5 s sections; each with 2 s or more of speech
  gets a loudness (power mean of the momentary loudness of its speech frames), before and
  after, and the spread is the 95th minus the 5th percentile of those: a far speaker 10 dB
  down shows up as about 10 LU, while pauses (which LRA counts) do not count at all. Fixed
  sections rather than pause-delimited ones, because turns in a conversation are often not
  separated by a pause long enough to find;
- `noise_floor_lufs`: the 10th percentile of the momentary loudness (the level the recording
  sits at when nobody speaks), and `speech_to_noise_lu` (integrated minus that floor): the
  floor alone moves with every gain, its distance below the speech is what noise reduction
  (and a leveler that pulled pauses up) changes;
- `leveler.gain_range_db`: the lowest and highest gain the leveler applied to speech;
- `limiter`: whether the true-peak limiter was in the chain and whether it had to act (the
  peak would have passed the ceiling without it);
- `noise_reduction`: the stretch the noise was learnt from, hum found, afftdn settings.

`sound_report` returns a plain JSON-able dict (stored in the job's measurements as `sound`,
and merged into `<slug>.qa.json` by the caption stage).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.audio.denoise import DenoisePlan
from pipeline.audio.leveler import GainCurve, speech_frames
from pipeline.audio.loudness import FRAME_S, MOMENTARY_S, LoudnessSeries

#: Length of a report section, and the speech a section needs to count.
SECTION_S = 5.0
MIN_SECTION_SPEECH_S = 2.0


def _power_mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan")
    return float(10 * np.log10(np.mean(10 ** (values / 10))))


def section_levels(before: LoudnessSeries, after: LoudnessSeries
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Loudness of each 5 s section's speech (frames judged on `before`), before and after."""
    speech = speech_frames(before).mask
    n = min(len(before.t), len(after.t))
    section = ((before.t[:n] - MOMENTARY_S / 2) // SECTION_S).astype(int)
    need = round(MIN_SECTION_SPEECH_S / FRAME_S)
    out_before, out_after = [], []
    for k in np.unique(section):
        frames = (section == k) & speech[:n]
        if frames.sum() >= need:
            out_before.append(_power_mean(before.momentary[:n][frames]))
            out_after.append(_power_mean(after.momentary[:n][frames]))
    return np.array(out_before), np.array(out_after)


def spread(levels: np.ndarray) -> float:
    """95th minus 5th percentile of section levels (nan with fewer than two sections)."""
    levels = levels[np.isfinite(levels)]
    if len(levels) < 2:
        return float("nan")
    return float(np.percentile(levels, 95) - np.percentile(levels, 5))


def noise_floor(series: LoudnessSeries) -> float:
    """10th percentile of the momentary loudness (LUFS; digital silence reads -120)."""
    valid = (series.t >= MOMENTARY_S - 1e-3) & np.isfinite(series.momentary)
    if not valid.any():
        return float("nan")
    return float(np.percentile(np.maximum(series.momentary[valid], -120.0), 10))


def _r(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 1)


def sound_report(before: LoudnessSeries, after: LoudnessSeries, *, curve: GainCurve,
                 denoise: DenoisePlan, leveler: bool, max_gain_db: float, gain_db: float,
                 limiter_inserted: bool, predicted_peak_dbtp: float, ceiling_dbtp: float,
                 ) -> dict[str, Any]:
    """The report for one master (see the module docstring for every field)."""
    sec_before, sec_after = section_levels(before, after)
    floor_before, floor_after = noise_floor(before), noise_floor(after)
    low, high = curve.speech_range_db()
    peak = predicted_peak_dbtp + gain_db
    return {
        "loudness_range_lu": {"before": _r(before.loudness.lra), "after": _r(after.loudness.lra)},
        "section_spread_lu": {"before": _r(spread(sec_before)), "after": _r(spread(sec_after)),
                              "sections": len(sec_before)},
        "noise_floor_lufs": {"before": _r(floor_before), "after": _r(floor_after)},
        "speech_to_noise_lu": {"before": _r(before.loudness.integrated - floor_before),
                               "after": _r(after.loudness.integrated - floor_after)},
        "integrated_lufs": {"before": _r(before.loudness.integrated),
                            "after": _r(after.loudness.integrated)},
        "true_peak_dbtp": {"before": _r(before.loudness.true_peak),
                           "after": _r(after.loudness.true_peak)},
        "leveler": {"enabled": leveler, "max_gain_db": max_gain_db,
                    "gain_range_db": [round(low, 1), round(high, 1)],
                    "reference_lufs": _r(curve.reference_lufs)},
        "linear_gain_db": round(gain_db, 2),
        "limiter": {"inserted": limiter_inserted, "acted": bool(peak > ceiling_dbtp),
                    "peak_without_limiter_dbtp": _r(peak),
                    "ceiling_dbtp": round(ceiling_dbtp, 1)},
        "noise_reduction": denoise.to_dict(),
    }
