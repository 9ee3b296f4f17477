"""Two-pass loudness normalisation into the lossless master (`master_audio`), with the speech
leveler, noise reduction and hum removal the settings ask for (`pipeline.audio.master`).

Pass 1 measures (integrated, true peak, LRA, and ebur128's 100 ms frame log); pass 2 renders
the master in one ffmpeg process: hum notches and afftdn (per show: `noise_reduction`,
`hum`), the leveler's gain curve (`[loudness] leveler`), a linear gain to the target — plus
a true-peak limiter when the peak would reach the ceiling, recorded as `limited`. Off target
after limiting, corrective passes (at most three) add the difference back. With all of them
off this is exactly the linear path of before. The output sample rate is explicit: 44.1 kHz
for audio episodes, 48 kHz for video episodes (the rates their deliverables use), so nothing
silently resamples to 192 kHz. The master contains the content only; bumpers are added by
encode (with `normalise_file`, linear).

The final check is on the encoded files (encode re-measures them); the figures measured here
are stored as `measurements["loudness"]` (`before`, `master`, target and gain plan) and the
sound report as `measurements["sound"]` (`pipeline.audio.report`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.audio.loudness import Loudness, Profile, measure, plan_gain, profile_for
from pipeline.audio.master import SoundOptions, make_master
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


def sound_options(ctx: Context, job: Job) -> SoundOptions:
    loud, show = ctx.settings.loudness, ctx.settings.show(job.show)
    return SoundOptions(leveler=loud.leveler, max_gain_db=loud.leveler_max_gain_db,
                        noise_reduction=show.noise_reduction, hum=show.hum)


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    source = ws.abs(input_audio(job))
    profile = episode_profile(job, ctx)
    dest = ws.job_dir(job.id) / "master.flac"
    figures, sound = make_master(ctx.ffmpeg, source, dest, profile, rate=output_rate(job),
                                 headroom_db=ctx.settings.loudness.headroom_db,
                                 options=sound_options(ctx, job))
    master = Loudness(**figures["master"])
    log.info("[normalise] %s: %s → %s (%s, gain %+.1f dB%s%s)", job.id,
             Loudness(**figures["before"]), master, profile.name, figures["gain_db"],
             ", levelled" if figures["leveler"] else "",
             ", true-peak limited" if figures["limited"] else "")
    return job.with_file("master_audio", ws.rel(dest)).with_measurements(loudness=figures,
                                                                          sound=sound)
