"""Loudness normalisation into the lossless master (`master_audio`), with the speech leveler,
noise reduction and hum removal the settings ask for (`pipeline.audio.master`).

Pass 1 measures (integrated, true peak, LRA, and ebur128's 100 ms frame log); pass 2 renders
the master in one ffmpeg process: hum notches and afftdn (per show: `noise_reduction`,
`hum`), the leveler's gain curve (`[loudness] leveler`), a linear gain to the target — plus a
true-peak limiter when the peak would reach the ceiling. Off target after limiting, corrective
passes (at most three) add the difference back. With all of them off this is exactly the
linear path (`pipeline.audio.normalise`, which encode uses for bumpers). The master contains
the content only; bumpers are added by encode. The figures are the episode's LoudnessResult,
what was done to the sound its sound report (`results.sound`).
"""

from __future__ import annotations

import logging

from pipeline.artifacts import Artifact
from pipeline.audio.master import SoundOptions, make_master
from pipeline.audio.normalise import delivery_profile, delivery_rate
from pipeline.models import Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.TRIMMED_AUDIO,)
MAKES = (Artifact.MASTER_AUDIO,)


def sound_options(ctx: Context, job: Job) -> SoundOptions:
    loud, show = ctx.settings.loudness, ctx.settings.show(job.show)
    return SoundOptions(leveler=loud.leveler, max_gain_db=loud.leveler_max_gain_db,
                        noise_reduction=show.noise_reduction, hum=show.hum)


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    channels = job.probe.audio.channels if job.probe else 2
    profile = delivery_profile(ctx.settings.loudness, channels)
    dest = ws.job_dir(job.id) / "master.flac"
    result, sound = make_master(ctx.ffmpeg, ctx.input(Artifact.TRIMMED_AUDIO), dest, profile,
                                rate=delivery_rate(job.kind),
                                headroom_db=ctx.settings.loudness.headroom_db,
                                options=sound_options(ctx, job))
    log.info("[normalise] %s: %s → %s (%s, gain %+.1f dB%s%s)", job.id, result.before,
             result.master, profile.name, result.gain_db,
             ", levelled" if result.leveler else "",
             ", true-peak limited" if result.limited else "")
    return job.with_file(Artifact.MASTER_AUDIO, ws.rel(dest)).with_results(loudness=result,
                                                                           sound=sound)
