"""Stage "soundbites": one to three short clips of the episode to share, and their places.

Soundbites come from the sidecar (`soundbites: [{start, duration, title}]`, times of the
recording as dropped, placed through the Timeline like chapters) or are chosen from the
transcript: whole sentences, 15–60 s, dense in the episode's key terms
(`pipeline.text.highlights`). Each is cut from the lossless master with pydub
(`pipeline.audio.soundbites`: only that span is decoded), faded, loudness-matched to the
episode's target and exported as a tagged MP3. Where each lies in the deliverables goes into
the feeds as `podcast:soundbite`; the clips are published beside the episode and listed on the
review page. The square audiogram videos of the clips are made after the review gate, by the
audiogram stage, once the captions they show are final.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

from pipeline.artifacts import SOUNDBITES, Artifact
from pipeline.asr.types import Transcript, Word
from pipeline.audio.id3 import Tags, write_tags
from pipeline.audio.normalise import AUDIO_RATE, delivery_profile
from pipeline.audio.soundbites import cut
from pipeline.errors import PipelineError
from pipeline.media import probe
from pipeline.models import Job, SoundbiteResult
from pipeline.text.highlights import plan
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.MASTER_AUDIO,)
USES = (Artifact.TRANSCRIPT,)
MAKES = SOUNDBITES


def _words(job: Job, ctx: Context) -> list[Word]:
    if not ctx.has_input(Artifact.TRANSCRIPT):
        return []
    stored = ctx.input(Artifact.TRANSCRIPT)
    try:
        return Transcript.from_dict(json.loads(stored.read_text(encoding="utf-8"))).words
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{ctx.workspace.rel(stored)} is not a valid transcript ({exc}); "
                            f"run `learncast retry {job.id} --from transcribe`") from exc


def run(job: Job, ctx: Context) -> Job:
    cfg = ctx.settings.soundbites
    show = ctx.settings.show(job.show)
    planned = plan(job.metadata.soundbites, _words(job, ctx), job.timeline, count=cfg.count,
                   min_s=cfg.min_s, max_s=cfg.max_s)
    job = job.replace(files={a: p for a, p in job.files.items() if a not in SOUNDBITES})
    master = ctx.input(Artifact.MASTER_AUDIO)
    info = probe(master)
    channels = job.results.encode.channels if job.results.encode else info.audio.channels
    profile = delivery_profile(ctx.settings.loudness, channels)
    enc = ctx.settings.encode
    cover = ctx.workspace.abs(show.artwork) if show.artwork else None
    results: list[SoundbiteResult] = []
    for k, (artifact, bite) in enumerate(zip(SOUNDBITES, planned, strict=False), 1):
        dest = ctx.workspace.job_dir(job.id) / f"{job.slug}.soundbite{k}.mp3"
        tags = Tags(title=bite.title, show=show.title, author=show.author,
                    description=f"A soundbite of “{job.title}”",
                    cover=cover if cover is not None and cover.is_file() else None)
        figures = cut(ctx.ffmpeg, master, dest, codec=info.audio.codec,
                      start_s=bite.content_start, duration_s=bite.duration, profile=profile,
                      headroom_db=ctx.settings.loudness.headroom_db, fade_in_s=cfg.fade_in_s,
                      fade_out_s=cfg.fade_out_s,
                      bitrate_kbps=enc.mp3_mono_bitrate_kbps if channels == 1
                      else enc.mp3_bitrate_kbps, sample_rate=AUDIO_RATE,
                      finish=partial(_tag, tags=tags))
        results.append(SoundbiteResult(
            start=round(job.timeline.content_to_deliverable(bite.content_start), 3),
            duration=round(min(figures.duration_s, bite.duration), 3), title=bite.title,
            origin=bite.origin, terms=list(bite.terms), loudness=figures.final,
            gain_db=figures.gain_db, limited=figures.limited))
        job = job.with_file(artifact, ctx.workspace.rel(dest))
        log.info("[soundbites] %s: %d. %.1f s at %.1f s (%s) %r → %s", job.id, k,
                 results[-1].duration, results[-1].start, bite.origin, bite.title, figures.final)
    if not planned:
        log.info("[soundbites] %s: no soundbite (the episode is shorter than %.0f s, or has no "
                 "transcript)", job.id, cfg.min_s)
    return job.with_results(soundbites=results).with_measurements(
        soundbites=len(results),
        soundbite_seconds=round(sum(r.duration for r in results), 3))


def _tag(mp3: Path, *, tags: Tags) -> None:
    write_tags(mp3, tags)
