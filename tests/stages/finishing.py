"""Helpers for the finishing-stage tests: jobs from generated media, independent measurement.

The loudness parser here is deliberately separate from `pipeline.audio.loudness`: tests
re-measure outputs with ffmpeg's `ebur128` summary read by their own code.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from pipeline.fsutil import sha256_file
from pipeline.media import probe
from pipeline.models import Job
from pipeline.runner import call_stage
from pipeline.sidecar import EpisodeMetadata
from pipeline.stages import prepare
from pipeline.workspace import Context


def make_job(ctx: Context, media: Path, *, metadata: EpisodeMetadata | None = None,
             job_id: str = "ep0001") -> Job:
    """A job as ingest would create it for `media`, with prepare already run."""
    ws = ctx.workspace
    original = ws.archive / media.name
    original.parent.mkdir(parents=True, exist_ok=True)
    original.write_bytes(media.read_bytes())
    meta = metadata or EpisodeMetadata(title="Test episode")
    job = Job(id=job_id, sha256=sha256_file(original), show=ctx.settings.show(None).id,
              title=meta.title or "Test episode", slug=f"test-episode-{job_id[:6]}",
              source=media.name, original=ws.rel(original), probe=probe(original),
              metadata=meta, files={"original": ws.rel(original)})
    ws.job_dir(job.id).mkdir(parents=True, exist_ok=True)
    return call_stage(prepare, job, ctx)


def upto(ctx: Context, job: Job, last: str, *, first: str = "trim") -> Job:
    """Run the stages `first`..`last` in pipeline order (as the runner would: inputs
    resolved, declarations checked)."""
    from pipeline.runner import STAGES

    names = [s.name for s in STAGES]
    for stage in STAGES[names.index(first):names.index(last) + 1]:
        job = call_stage(stage, job, ctx)
    return job


def ebur128(ffmpeg: str, path: Path, stream: str = "a:0") -> dict[str, float]:
    """Integrated (LUFS), true peak (dBTP) and LRA (LU) of `path`, read from ebur128."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map",
         f"0:{stream}", "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True)
    summary = proc.stderr.rsplit("Summary:", 1)[1]
    i = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary)[1])  # type: ignore[index]
    lra = float(re.search(r"LRA:\s+(-?[\d.]+) LU", summary)[1])  # type: ignore[index]
    tp = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)[1])  # type: ignore[index]
    return {"i": i, "tp": tp, "lra": lra}


def duration(path: Path, stream: str = "audio") -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0] if stream == "audio" else c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        return c.duration / av.time_base


def with_settings(ctx: Context, **overrides: object) -> Context:
    """The same workspace with some settings overridden (as config/env would)."""
    from pipeline.workspace import open_workspace

    return Context(workspace=open_workspace(ctx.workspace.root, overrides=dict(overrides)),
                   ffmpeg=ctx.ffmpeg, resources=ctx.resources, state=ctx.state)


def add_artwork(ctx: Context) -> Path:
    """Copy the repository's sample show artwork into the test workspace."""
    src = Path(__file__).resolve().parents[2] / "assets" / "artwork.png"
    dest = ctx.workspace.assets / "artwork.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    return dest


def speech_at(ffmpeg: str, source: Path, dest: Path, lufs: float, *, rate: int = 44100,
              channels: int = 2, clip_db: float = 0.0) -> Path:
    """Real speech scaled to about `lufs` (measured, then gained); `clip_db` more gain is
    added and the result hard-clipped at 0 dBFS by the 16-bit conversion."""
    base = dest.with_name(f"{dest.stem}.base.flac")
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(source),
                    "-ar", str(rate), "-ac", str(channels), "-c:a", "flac",
                    "-sample_fmt", "s32", str(base)], check=True)
    gain = lufs - ebur128(ffmpeg, base)["i"] + clip_db
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(base),
                    "-af", f"volume={gain:.2f}dB", "-c:a", "pcm_s16le", str(dest)], check=True)
    return dest


def pcm(ffmpeg: str, path: Path, *, rate: int = 48000, stream: str = "a:0") -> np.ndarray:
    """Decoded mono float samples (small test files only)."""

    out = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
                          "-map", f"0:{stream}", "-ac", "1", "-ar", str(rate), "-f", "f32le",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4")
