"""Stage "audiogram": a video of an audio-only episode, and square videos of its soundbites.

For shows with `audiogram` on (`true`, or `auto` on a show whose `medium` is video), an
audio-only episode gets an MP4 of the whole episode — artwork, title, level bars driven by its
audio and the captions burned in — composed with moviepy (`pipeline.video.audiogram`) and
encoded with the same H.264/AAC settings as every other MP4; then the chapter track, cover and
metadata are added by the same remux as the episode MP4 (`pipeline.audio.mp4`), and its sound
is re-measured against the loudness profile. It joins the video feed and the audio feed's
`podcast:alternateEnclosure`. Each soundbite clip gets a square audiogram of its own.

It runs after the review gate: the captions are burned into the picture, so it is drawn once
they are approved, and again (with package) whenever a reviewer changes them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.artifacts import SOUNDBITE_VIDEOS, SOUNDBITES, Artifact
from pipeline.audio.loudness import measure
from pipeline.audio.normalise import delivery_profile
from pipeline.captions.profiles import get_profile
from pipeline.captions.segmenter import Cue
from pipeline.errors import PipelineError
from pipeline.models import AudiogramResult, Job
from pipeline.review.cues import parse_vtt
from pipeline.video.audiogram import Style, clip_cues, write_audiogram
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.ENCODED_AUDIO,)
USES = (Artifact.VTT, *SOUNDBITES)
MAKES = (Artifact.AUDIOGRAM, *SOUNDBITE_VIDEOS)


def _style(ctx: Context, width: int, height: int) -> Style:
    a, enc = ctx.settings.audiogram, ctx.settings.encode
    profile = get_profile(ctx.settings.captions.profile)
    return Style(width=width, height=height, fps=a.fps, bands=a.bars, font=a.font,
                 crf=enc.video_crf, preset=enc.video_preset, aac_kbps=enc.aac_bitrate_kbps,
                 max_chars=profile.max_chars_per_line, max_lines=profile.max_lines)


def run(job: Job, ctx: Context) -> Job:
    show = ctx.settings.show(job.show)
    made = (Artifact.AUDIOGRAM, *SOUNDBITE_VIDEOS)
    job = job.replace(files={a: p for a, p in job.files.items() if a not in made})
    if job.kind != "audio" or not show.makes_audiograms:
        return job.with_results(audiogram=None)
    ws = ctx.workspace
    duration = job.timeline.duration(Artifact.AUDIO)
    if duration is None:
        raise PipelineError(f"episode {job.id} has no encoded audio duration yet; run "
                            f"`learncast retry {job.id} --from encode`")
    cues: list[Cue] = []
    if ctx.has_input(Artifact.VTT):
        cues = parse_vtt(ctx.input(Artifact.VTT).read_text(encoding="utf-8"))
    artwork = ws.abs(show.artwork) if show.artwork else None
    artwork = artwork if artwork is not None and artwork.is_file() else None
    channels = job.results.encode.channels if job.results.encode else 2
    out = ws.job_dir(job.id)
    a = ctx.settings.audiogram
    language = job.results.captions.language if job.results.captions else show.language
    metadata = {"title": job.title, "album": show.title, "artist": show.author,
                "comment": job.metadata.description or ""}

    common: dict[str, Any] = {"show": show.title, "artwork": artwork, "channels": channels,
                              "language": language, "metadata": metadata}
    episode = out / f"{job.slug}.audiogram.mp4"
    first = write_audiogram(ctx.ffmpeg, ctx.input(Artifact.ENCODED_AUDIO), episode,
                            duration_s=duration, cues=cues, title=job.title,
                            style=_style(ctx, a.width, a.height),
                            chapters=job.results.chapters or [], **common)
    _verify(ctx, episode, channels)  # a clip keeps its own, measured, loudness
    job = job.with_file(Artifact.AUDIOGRAM, ws.rel(episode))
    seconds, clips = first.seconds, 0
    clip_seconds = 0.0
    for k, (source, target, bite) in enumerate(zip(SOUNDBITES, SOUNDBITE_VIDEOS,
                                                   job.results.soundbites or [],
                                                   strict=False), 1):
        if not ctx.has_input(source):
            continue
        dest = out / f"{job.slug}.soundbite{k}.mp4"
        clip_seconds += write_audiogram(
            ctx.ffmpeg, ctx.input(source), dest, duration_s=bite.duration,
            cues=clip_cues(cues, bite.start, bite.duration), title=bite.title,
            style=_style(ctx, a.square_px, a.square_px), chapters=[], **common).seconds
        job = job.with_file(target, ws.rel(dest))
        clips += 1
    log.info("[audiogram] %s: %dx%d at %g fps, captions %d px, in %.1f s (%.2fx the "
             "episode); %d soundbite video(s) in %.1f s", job.id, first.width, first.height,
             first.fps, first.caption_px, seconds, seconds / duration, clips, clip_seconds)
    return job.with_results(
        timeline=job.timeline.with_durations(audiogram=round(duration, 3)),
        audiogram=AudiogramResult(width=first.width, height=first.height, fps=first.fps,
                                  caption_px=first.caption_px,
                                  smallest_caption_px=first.smallest_caption_px,
                                  frames=first.frames, soundbite_videos=clips),
    ).with_measurements(audiogram_seconds=round(seconds, 3),
                        audiogram_rtf=round(seconds / duration, 4) if duration else 0.0,
                        soundbite_video_seconds=round(clip_seconds, 3))


def _verify(ctx: Context, path: Path, channels: int) -> None:
    """The audiogram's sound meets the episode's loudness profile, like every deliverable."""
    profile = delivery_profile(ctx.settings.loudness, channels)
    missed = profile.misses(measure(ctx.ffmpeg, path))
    if missed:
        raise PipelineError(f"the audiogram {path.name} {missed}. Raise [loudness] headroom_db, "
                            "then run `learncast retry ID --from audiogram`")
