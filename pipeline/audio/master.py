"""Making the lossless master: analyse, plan, render once, verify — and report.

1. **Analyse** (one streaming ebur128 pass over the input): integrated loudness, true peak,
   LRA and the 100 ms frame log (`measure_series`).
2. **Plan**: the leveler's gain curve (`leveler.plan`), noise reduction (`denoise.plan`, which
   decodes only the quiet stretch it learns from), and the linear gain to the profile's
   target from the *predicted* loudness after levelling, with a true-peak limiter when the
   predicted peak comes within 0.5 dB of the ceiling.
3. **Render** (one ffmpeg process): hum notches and afftdn → the gain envelope (`amultiply`)
   → linear gain → limiter (4x oversampled) → output rate → FLAC; an `ebur128` at the very
   end measures exactly what is written, so verifying the master costs no second decode.
4. **Verify**: off target by more than 0.3 LU, or a peak over the ceiling, renders again with
   the difference added (at most three times), as the linear path does after limiting.

With the leveler, noise reduction and hum removal all off this is the plain linear path of
before (same filter chain, same samples), and the report is computed without decoding the
master again: a linear gain moves every figure by exactly the gain.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.audio import denoise, leveler
from pipeline.audio.loudness import (
    GainPlan,
    Loudness,
    LoudnessSeries,
    Profile,
    measure_series,
    plan_gain,
    require_audible,
    run_series,
    series_filter,
)
from pipeline.audio.report import sound_report
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path
from pipeline.media import FLAC_OUTPUT, probe, run_ffmpeg
from pipeline.models import LoudnessResult

log = logging.getLogger(__name__)

#: Off-target by more than this after rendering → one corrective pass.
CORRECT_ABOVE_LU = 0.3
MAX_CORRECTIONS = 3
#: The limiter joins the chain when the predicted peak comes this close to the ceiling.
PEAK_MARGIN_DB = 0.5


@dataclass(frozen=True)
class SoundOptions:
    """What the master gets besides the linear gain (from `[loudness]` and the show)."""

    leveler: bool = False
    max_gain_db: float = 12.0
    noise_reduction: str = "off"  # off | light | strong
    hum: str = "off"  # auto | 50 | 60 | off

    @property
    def linear_only(self) -> bool:
        return not self.leveler and self.noise_reduction == "off" and self.hum == "off"


def _layout(channels: int) -> str:
    if channels not in (1, 2):
        raise PipelineError(f"the audio to normalise has {channels} channels; prepare mixes "
                            "recordings to stereo, so run `learncast retry` to redo prepare")
    return "mono" if channels == 1 else "stereo"


def _render(ffmpeg: str, source: Path, dest: Path, plan: GainPlan, *, curve: leveler.GainCurve,
            dn: denoise.DenoisePlan, envelope: Path, in_rate: int, channels: int,
            duration_s: float, measure: bool) -> LoudnessSeries | None:
    """One ffmpeg pass: [denoise] → [gain curve] → gain (+ limiter) → rate → [ebur128] → FLAC."""
    inputs = ["-i", str(source)]
    parts: list[str] = []
    label = "[0:a]"
    if dn.active:
        text, label = dn.graph(label, in_rate, preroll_input=inputs.count("-i"))
        inputs += dn.inputs(source)
        parts.append(text)
    if not curve.is_flat:
        curve.write_envelope(envelope, duration_s)
        idx = inputs.count("-i")
        inputs += ["-f", "f32le", "-ar", str(leveler.ENVELOPE_RATE), "-ac", "1",
                   "-i", str(envelope)]
        pan = f",pan={_layout(channels)}|c0=c0|c1=c0" if channels == 2 else ""
        parts.append(f"[{idx}:a]aresample={in_rate}{pan}[env]")
        parts.append(f"{label}[env]amultiply[lev]")
        label = "[lev]"
    tail = plan.filter + (f",{series_filter()}" if measure else "")
    parts.append(f"{label}{tail}[out]")
    what = f"making the master of {source.name}"
    try:
        with atomic_path(dest) as tmp:
            args = [*inputs, "-filter_complex", ";".join(parts), "-map", "[out]",
                    *FLAC_OUTPUT, str(tmp)]
            if not measure:
                run_ffmpeg(ffmpeg, args, what=what)
                return None
            return run_series(ffmpeg, ["-y", *args], what=what, name=dest.name)
    finally:
        envelope.unlink(missing_ok=True)


def make_master(ffmpeg: str, source: Path, dest: Path, profile: Profile, *, rate: int,
                headroom_db: float, options: SoundOptions
                ) -> tuple[LoudnessResult, dict[str, Any]]:
    """Render `dest` from `source`; returns (loudness figures, sound report)."""
    info = probe(source)
    channels, in_rate = info.audio.channels, info.audio.sample_rate
    _layout(channels)
    before = measure_series(ffmpeg, source)
    require_audible(before.loudness)
    curve = (leveler.plan(before, max_gain_db=options.max_gain_db) if options.leveler
             else leveler.GainCurve.flat(before))
    dn = denoise.plan(ffmpeg, source, before, mode=options.noise_reduction, hum=options.hum,
                      channels=channels)
    if curve.is_flat:  # ebur128's own figures, exactly as the linear path always used them
        predicted = before.loudness
    else:
        predicted = Loudness(*leveler.predict(before, curve), before.loudness.lra)
    processed = not curve.is_flat or dn.active
    margin = PEAK_MARGIN_DB if processed else 0.0
    plan = plan_gain(predicted, profile, rate=rate, headroom_db=headroom_db,
                     peak_margin_db=margin)
    render = functools.partial(_render, ffmpeg, source, dest, curve=curve, dn=dn,
                               envelope=dest.with_name(f".{dest.stem}.gain.f32"),
                               in_rate=in_rate, channels=channels,
                               duration_s=before.duration_s)
    measured = processed or plan.limited
    after = render(plan, measure=measured)
    if after is None:  # linear, no limiter: every figure moved by exactly the gain
        after = before.shifted(plan.gain_db)
    corrections, extra = 0, 0.0
    while corrections < MAX_CORRECTIONS and (
            (measured and abs(after.loudness.integrated - profile.integrated) > CORRECT_ABOVE_LU)
            or after.loudness.true_peak > plan.ceiling_db + 0.05):
        extra += profile.integrated - after.loudness.integrated
        force = after.loudness.true_peak > plan.ceiling_db + 0.05 or plan.limited
        plan = plan_gain(predicted, profile, rate=rate, headroom_db=headroom_db,
                         extra_gain_db=extra, peak_margin_db=99.0 if force else margin)
        after = render(plan, measure=True)
        assert after is not None
        measured = True
        corrections += 1
    figures = LoudnessResult(profile=profile.name, target_i=profile.integrated,
                             target_tp=profile.true_peak, tolerance_lu=profile.tolerance,
                             before=before.loudness.rounded(), master=after.loudness.rounded(),
                             gain_db=round(plan.gain_db, 2), limited=plan.limited,
                             ceiling_db=round(plan.ceiling_db, 2), corrections=corrections,
                             sample_rate=rate, leveler=options.leveler)
    report = sound_report(before, after, curve=curve, denoise=dn, leveler=options.leveler,
                          max_gain_db=options.max_gain_db, gain_db=plan.gain_db,
                          limiter_inserted=plan.limited, predicted_peak_dbtp=predicted.true_peak,
                          ceiling_dbtp=plan.ceiling_db)
    return figures, report
