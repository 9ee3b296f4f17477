"""Extract the recording's audio once into a lossless working copy.

Every later audio step (silence detection, loudness analysis, transcription) reads this FLAC
instead of demuxing a video container again, and the original in `archive/` is never touched.
Surround audio is downmixed to stereo here, once; the source sample rate is kept so no step
resamples twice.
"""

from __future__ import annotations

from pipeline.artifacts import Artifact
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path
from pipeline.media import FLAC_OUTPUT, run_ffmpeg
from pipeline.models import Job
from pipeline.workspace import Context

NEEDS = (Artifact.ORIGINAL,)
MAKES = (Artifact.SOURCE_AUDIO,)


def run(job: Job, ctx: Context) -> Job:
    if job.probe is None:
        raise PipelineError(f"episode {job.id} has no probe data; drop the recording again")
    ws = ctx.workspace
    source = ctx.input(Artifact.ORIGINAL)
    dest = ws.job_dir(job.id) / "source.flac"
    channels = ["-ac", "2"] if job.probe.audio.channels > 2 else []
    with atomic_path(dest) as tmp:
        run_ffmpeg(ctx.ffmpeg, ["-i", str(source), "-map", "0:a:0", "-vn", "-sn", "-dn",
                                *channels, *FLAC_OUTPUT, str(tmp)],
                   what=f"extracting the audio of {job.source}")
    return job.with_file(Artifact.SOURCE_AUDIO, ws.rel(dest))
