"""Two-pass loudness normalisation of one file, shared by the normalise stage (the episode's
master) and encode (the show's intro/outro bumpers), so both follow exactly the same rules.

Pass 1 measures (integrated, true peak, LRA); pass 2 applies a linear gain — plus a true-peak
limiter only when the gain would push the peak over the ceiling, recorded as `limited`. When
the limiter took loudness away, corrective passes (at most three) add the difference back
(limiting again), so the master lands on target. The output sample rate is explicit: 44.1 kHz
for audio episodes, 48 kHz for video episodes (the rates their deliverables use), so nothing
silently resamples to 192 kHz.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.audio.loudness import Loudness, Profile, measure, plan_gain, profile_for
from pipeline.config import LoudnessSettings
from pipeline.fsutil import atomic_path
from pipeline.media import FLAC_OUTPUT, run_ffmpeg
from pipeline.models import LoudnessResult

#: Sample rates of the deliverables: MP3 (audio episodes) and MP4's AAC (video episodes).
AUDIO_RATE = 44100
VIDEO_RATE = 48000
#: Off-target by more than this after limiting → one corrective pass.
_CORRECT_ABOVE_LU = 0.3
_MAX_CORRECTIONS = 3


def delivery_rate(kind: str) -> int:
    return VIDEO_RATE if kind == "video" else AUDIO_RATE


def delivery_profile(cfg: LoudnessSettings, channels: int) -> Profile:
    """The profile an episode is delivered to (the mono variant for mono recordings)."""
    return profile_for(cfg.profile, mono=channels == 1, mono_variant=cfg.mono_variant)


def normalise_file(ffmpeg: str, source: Path, dest: Path, profile: Profile, *, rate: int,
                   headroom_db: float, channels: int | None = None) -> LoudnessResult:
    """Measure, apply gain (+ limiter if needed), re-measure; returns the recorded figures."""
    before = measure(ffmpeg, source)
    plan = plan_gain(before, profile, rate=rate, headroom_db=headroom_db)
    _apply(ffmpeg, source, dest, plan.filter, channels)
    # A linear gain moves every figure by exactly the gain, so the master need not be decoded
    # again (the encoded files are measured anyway); after a limiter it must be.
    after = (measure(ffmpeg, dest) if plan.limited else
             Loudness(before.integrated + plan.gain_db, before.true_peak + plan.gain_db,
                      before.lra))
    corrections = 0
    extra = 0.0
    while (plan.limited and abs(after.integrated - profile.integrated) > _CORRECT_ABOVE_LU
           and corrections < _MAX_CORRECTIONS):
        extra += profile.integrated - after.integrated
        plan = plan_gain(before, profile, rate=rate, headroom_db=headroom_db,
                         extra_gain_db=extra)
        _apply(ffmpeg, source, dest, plan.filter, channels)
        after = measure(ffmpeg, dest)
        corrections += 1
    return LoudnessResult(profile=profile.name, target_i=profile.integrated,
                          target_tp=profile.true_peak, tolerance_lu=profile.tolerance,
                          before=before.rounded(), master=after.rounded(),
                          gain_db=round(plan.gain_db, 2), limited=plan.limited,
                          ceiling_db=round(plan.ceiling_db, 2), corrections=corrections,
                          sample_rate=rate)


def _apply(ffmpeg: str, source: Path, dest: Path, chain: str, channels: int | None) -> None:
    ac = ["-ac", str(channels)] if channels else []
    with atomic_path(dest) as tmp:
        run_ffmpeg(ffmpeg, ["-i", str(source), "-map", "0:a:0", "-af", chain, *ac,
                            *FLAC_OUTPUT, str(tmp)],
                   what=f"applying loudness gain to {source.name}")
