"""Two-pass loudness normalisation into the lossless master (`master_audio`).

The rules (linear gain, a true-peak limiter only when needed, corrective passes) live in
`pipeline.audio.normalise`, shared with encode's bumper matching. The master contains the
content only; bumpers are added by encode, and the final check is on the encoded files
(encode re-measures them). The figures are the episode's LoudnessResult.
"""

from __future__ import annotations

import logging

from pipeline.artifacts import Artifact
from pipeline.audio.normalise import delivery_profile, delivery_rate, normalise_file
from pipeline.models import Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.TRIMMED_AUDIO,)
MAKES = (Artifact.MASTER_AUDIO,)


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    channels = job.probe.audio.channels if job.probe else 2
    profile = delivery_profile(ctx.settings.loudness, channels)
    dest = ws.job_dir(job.id) / "master.flac"
    result = normalise_file(ctx.ffmpeg, ctx.input(Artifact.TRIMMED_AUDIO), dest, profile,
                            rate=delivery_rate(job.kind),
                            headroom_db=ctx.settings.loudness.headroom_db)
    log.info("[normalise] %s: %s → %s (%s, gain %+.1f dB%s)", job.id, result.before,
             result.master, profile.name, result.gain_db,
             ", true-peak limited" if result.limited else "")
    return job.with_file(Artifact.MASTER_AUDIO, ws.rel(dest)).with_results(loudness=result)
