"""Two-pass loudness normalisation into the lossless master (`master_audio`).

Pass 1 measures (integrated, true peak, LRA); pass 2 applies a linear gain — plus a true-peak
limiter only when the gain would push the peak over the ceiling, recorded as `limited`. When
the limiter took loudness away, corrective passes (at most three) add the difference back
(limiting again), so the master lands on target. The output sample rate is explicit: 44.1 kHz
for audio episodes, 48 kHz for video episodes (the rates their deliverables use), so nothing
silently resamples to 192 kHz. The master contains the content only; bumpers are added by encode.

The final check is on the encoded files (encode re-measures them); the figures measured here
are stored as `measurements["loudness"]` (`before`, `master`, target and gain plan).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.audio.loudness import Loudness, Profile, measure, plan_gain, profile_for
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path
from pipeline.media import FLAC_OUTPUT, run_ffmpeg
from pipeline.models import Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)

AUDIO_RATE = 44100
VIDEO_RATE = 48000
#: Off-target by more than this after limiting → one corrective pass.
_CORRECT_ABOVE_LU = 0.3
_MAX_CORRECTIONS = 3


def input_audio(job: Job) -> str:
    for key in ("trimmed_audio", "source_audio"):
        if key in job.files:
            return job.files[key]
    raise PipelineError(f"episode {job.id} has no audio to normalise (no trimmed_audio or "
                        "source_audio); run `learncast retry` so prepare runs first")


def episode_profile(job: Job, ctx: Context) -> Profile:
    cfg = ctx.settings.loudness
    mono = bool(job.probe and job.probe.audio.channels == 1)
    return profile_for(cfg.profile, mono=mono, mono_variant=cfg.mono_variant)


def output_rate(job: Job) -> int:
    return VIDEO_RATE if job.kind == "video" else AUDIO_RATE


def normalise_file(ffmpeg: str, source: Path, dest: Path, profile: Profile, *, rate: int,
                   headroom_db: float, channels: int | None = None,
                   ) -> dict[str, object]:
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
    return {"profile": profile.name, "target_i": profile.integrated,
            "target_tp": profile.true_peak, "tolerance_lu": profile.tolerance,
            "before": before.to_dict(), "master": after.to_dict(), **plan.to_dict(),
            "corrections": corrections, "master_measured": plan.limited, "sample_rate": rate}


def _apply(ffmpeg: str, source: Path, dest: Path, chain: str, channels: int | None) -> None:
    ac = ["-ac", str(channels)] if channels else []
    with atomic_path(dest) as tmp:
        run_ffmpeg(ffmpeg, ["-i", str(source), "-map", "0:a:0", "-af", chain, *ac,
                            *FLAC_OUTPUT, str(tmp)],
                   what=f"applying loudness gain to {source.name}")


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    source = ws.abs(input_audio(job))
    profile = episode_profile(job, ctx)
    dest = ws.job_dir(job.id) / "master.flac"
    figures = normalise_file(ctx.ffmpeg, source, dest, profile, rate=output_rate(job),
                             headroom_db=ctx.settings.loudness.headroom_db)
    master = Loudness(**figures["master"])  # type: ignore[arg-type]
    log.info("[normalise] %s: %s → %s (%s, gain %+.1f dB%s)", job.id,
             Loudness(**figures["before"]), master, profile.name,  # type: ignore[arg-type]
             figures["gain_db"], ", true-peak limited" if figures["limited"] else "")
    return job.with_file("master_audio", ws.rel(dest)).with_measurements(loudness=figures)
