"""The deliverables' media: an MP3 for the audio feed and, for video episodes, an MP4 — verified.

Audio: the loudness-normalised master (plus the show's intro/outro, loudness-matched to the
same profile and joined with a short crossfade) → MP3, 44.1 kHz, CBR. Video: the trimmed
picture + the same audio as AAC 48 kHz → MP4, at most `video_max_height`. Where the content
starts after the intro goes into the episode's Timeline; tags, cover art, chapters and the
caption track are added by the package stage once captions and chapters exist.

Re-encode only what must change: the picture is stream-copied when it is already H.264 4:2:0
within the size limit and no bumper is added; otherwise it is re-encoded once with x264.
Bumpers are joined in ffmpeg's filter graph (`acrossfade`, `concat`) rather than in pydub or
moviepy, because both load the whole episode into memory and this must work for hour-long
recordings; the intro's picture is the bumper's own video if it has one, else the show artwork
as a still.

Every deliverable is re-measured after encoding; a file outside the profile's tolerance (or
over its true-peak ceiling) fails the stage with the figures, so nothing off-level is published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from pipeline.artifacts import Artifact
from pipeline.audio.loudness import Loudness, Profile, measure
from pipeline.audio.normalise import (
    AUDIO_RATE,
    VIDEO_RATE,
    delivery_profile,
    delivery_rate,
    normalise_file,
)
from pipeline.config import ShowSettings
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path
from pipeline.images import artwork_size
from pipeline.media import probe, run_ffmpeg
from pipeline.models import EncodeResult, Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.MASTER_AUDIO,)
USES = (Artifact.TRIMMED_VIDEO,)
MAKES = (Artifact.ENCODED_AUDIO, Artifact.ENCODED_VIDEO)


@dataclass(frozen=True)
class Bumper:
    audio: Path  # loudness-matched FLAC in the job folder
    source: Path  # the file in assets/ (may carry a picture)
    duration_s: float
    has_video: bool


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0] if c.streams.audio else c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        return (c.duration or 0) / av.time_base


def _prepare_bumpers(job: Job, ctx: Context, show: ShowSettings, profile: Profile,
                     rate: int, channels: int) -> dict[str, Bumper]:
    out: dict[str, Bumper] = {}
    for name, value in (("intro", show.intro), ("outro", show.outro)):
        if not value:
            continue
        src = ctx.workspace.abs(value)
        if not src.is_file():
            raise PipelineError(f"show {show.id!r}: {name} {value!r} does not exist; put the "
                                f"file in assets/ or clear shows.{name} in the config")
        info = probe(src)
        dest = ctx.workspace.job_dir(job.id) / f"{name}-{rate}.flac"
        normalise_file(ctx.ffmpeg, src, dest, profile, rate=rate,
                       headroom_db=ctx.settings.loudness.headroom_db, channels=channels)
        out[name] = Bumper(dest, src, _duration(dest), info.video is not None)
    return out


def _audio_graph(n_inputs_before: int, bumpers: dict[str, Bumper], fade: float,
                 rate: int, channels: int, gain_db: float = 0.0) -> tuple[list[str], str]:
    """Inputs and filter graph that join [intro] master [outro] into `[aout]`.

    The master is input `n_inputs_before`; bumpers follow it. `gain_db` trims the whole.
    """
    inputs: list[str] = []
    idx = n_inputs_before + 1
    label = f"[{n_inputs_before}:a]"
    parts: list[str] = []
    tail = f"aresample={rate}:resampler=soxr,aformat=channel_layouts={_layout(channels)}"
    if gain_db:
        tail = f"volume={gain_db:.3f}dB:precision=double,{tail}"
    if "intro" in bumpers:
        inputs += ["-i", str(bumpers["intro"].audio)]
        parts.append(f"[{idx}:a]{label}acrossfade=d={fade}:c1=tri:c2=tri[j0]")
        label, idx = "[j0]", idx + 1
    if "outro" in bumpers:
        inputs += ["-i", str(bumpers["outro"].audio)]
        parts.append(f"{label}[{idx}:a]acrossfade=d={fade}:c1=tri:c2=tri[j1]")
        label = "[j1]"
    parts.append(f"{label}{tail}[aout]")
    return inputs, ";".join(parts)


def _fade(ctx: Context, bumpers: dict[str, Bumper]) -> float:
    """The crossfade, shortened for very short bumpers (acrossfade needs both sides longer)."""
    shortest = min((b.duration_s for b in bumpers.values()), default=float("inf"))
    return round(min(ctx.settings.encode.crossfade_s, shortest / 2), 3)


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


#: A lossy encode moves loudness a little (LAME's 16-17 kHz lowpass takes away the bright
#: top of speech that K-weighting counts: 0.4 LU on the JFK clip). Off target by more than
#: this, the deliverable is encoded once more with the difference as gain, so a tight profile
#: (EBU R128: ±0.5 LU) is met by the file learners get, not only by the master. A larger
#: difference is not encoding drift but a wrong master: it fails, never gets patched here.
_TRIM_ABOVE_LU = 0.2
_TRIM_AT_MOST_DB = 1.0


def _encode_verified(ffmpeg: str, dest: Path, profile: Profile, what: str,
                     encode: Callable[[Path, float], None]) -> tuple[Loudness, float]:
    """`encode(tmp, gain_db)`, re-measured; trimmed once if needed; then checked against the
    profile before it reaches its final name. Returns the figures and the trim gain."""
    gain = 0.0
    with atomic_path(dest) as tmp:
        encode(tmp, gain)
        got = measure(ffmpeg, tmp)
        off = profile.integrated - got.integrated
        if (_TRIM_ABOVE_LU < abs(off) <= _TRIM_AT_MOST_DB
                and got.true_peak + off <= profile.true_peak):
            gain = round(off, 2)
            encode(tmp, gain)
            got = measure(ffmpeg, tmp)
        missed = profile.misses(got)
        if missed:
            raise PipelineError(
                f"the encoded {what} {missed}. Raise [loudness] headroom_db, or check the "
                "recording for extreme peaks, then run `learncast retry`")
        return got, gain


def _encode_mp3(ctx: Context, job: Job, master: Path, bumpers: dict[str, Bumper],
                channels: int, profile: Profile, dest: Path) -> tuple[Loudness, float]:
    enc = ctx.settings.encode
    bitrate = enc.mp3_mono_bitrate_kbps if channels == 1 else enc.mp3_bitrate_kbps

    def encode(tmp: Path, gain_db: float) -> None:
        extra, graph = _audio_graph(0, bumpers, _fade(ctx, bumpers), AUDIO_RATE, channels,
                                    gain_db)
        run_ffmpeg(ctx.ffmpeg, ["-i", str(master), *extra, "-filter_complex", graph,
                                "-map", "[aout]", "-c:a", "libmp3lame", "-b:a", f"{bitrate}k",
                                "-ar", str(AUDIO_RATE), "-ac", str(channels),
                                "-map_metadata", "-1", "-id3v2_version", "0",
                                "-write_xing", "1", str(tmp)],
                   what=f"encoding the MP3 of {job.source}")

    return _encode_verified(ctx.ffmpeg, dest, profile, "MP3", encode)


@dataclass(frozen=True)
class Picture:
    copyable: bool
    width: int
    height: int
    fps: float
    start_s: float  # first frame's display time (B-frame delay of a stream-copied cut)


def _picture(path: Path, max_height: int) -> Picture:
    """Can the picture be stream-copied? Also its size, frame rate and start offset."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        fmt = cc.format.name if cc.format else ""
        rate = float(v.average_rate or v.guessed_rate or 25)
        ok = (cc.name == "h264" and fmt in ("yuv420p", "yuvj420p") and v.height <= max_height
              and v.width % 2 == 0 and v.height % 2 == 0)
        start = float(v.start_time * v.time_base) if v.start_time and v.time_base else 0.0
        return Picture(ok, int(v.width), int(v.height), rate, max(start, 0.0))


def _out_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    h = min(height, max_height) // 2 * 2
    w = round(width * h / height / 2) * 2
    return w, h


def _encode_mp4(ctx: Context, job: Job, picture: Path, master: Path,
                bumpers: dict[str, Bumper], channels: int, show: ShowSettings,
                profile: Profile, dest: Path) -> tuple[str, Loudness, float]:
    enc = ctx.settings.encode
    pic = _picture(picture, enc.video_max_height)
    fps = pic.fps
    w, h = _out_size(pic.width, pic.height, enc.video_max_height)
    fade = _fade(ctx, bumpers)
    # ffmpeg rebases every input to start at zero; keep the picture's own start offset so
    # its first frame is shown when it was cut to be (in sync with the audio).
    inputs = ["-itsoffset", f"{pic.start_s:.6f}", "-i", str(picture), "-i", str(master)]
    a_inputs = _audio_graph(1, bumpers, fade, VIDEO_RATE, channels)[0]
    inputs += a_inputs
    n = 2 + len(a_inputs) // 2
    x264 = ["-c:v", "libx264", "-preset", enc.video_preset, "-crf", str(enc.video_crf),
            "-pix_fmt", "yuv420p"]
    fit = (f"scale={w}:{h}:force_original_aspect_ratio=decrease:flags=lanczos,"
           f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps:.6f},format=yuv420p")
    if bumpers:
        mode = "re-encode (bumpers)"
        v_parts: list[str] = []
        labels: list[str] = []
        for name in ("intro", "main", "outro"):
            if name == "main":
                lead = (f",tpad=start_duration={pic.start_s:.6f}:start_mode=clone"
                        if pic.start_s > 0 else "")
                v_parts.append(f"[0:v]{fit},setpts=PTS-STARTPTS{lead}[vmain]")
                labels.append("[vmain]")
                continue
            if name not in bumpers:
                continue
            b = bumpers[name]
            shown = max(b.duration_s - fade, 0.04)
            if b.has_video:
                inputs += ["-i", str(b.source)]
            else:
                inputs += ["-loop", "1", "-framerate", f"{fps:.6f}", "-t", f"{shown:.6f}",
                           "-i", str(_still(ctx, show))]
            v_parts.append(f"[{n}:v]{fit},trim=duration={shown:.6f},setpts=PTS-STARTPTS"
                           f"[v{name}]")
            labels.append(f"[v{name}]")
            n += 1
        v_graph = (";".join(v_parts) + f";{''.join(labels)}concat=n={len(labels)}:v=1:a=0"
                   "[vout];")
        video_args = ["-map", "[vout]", *x264]
    elif pic.copyable:
        mode = "stream-copy"
        v_graph = ""
        video_args = ["-map", "0:v:0", "-c:v", "copy"]
    else:
        mode = "re-encode"
        v_graph = f"[0:v]{fit}[vout];"
        video_args = ["-map", "[vout]", *x264]

    def encode(tmp: Path, gain_db: float) -> None:
        a_graph = _audio_graph(1, bumpers, fade, VIDEO_RATE, channels, gain_db)[1]
        run_ffmpeg(ctx.ffmpeg, [*inputs, "-filter_complex", v_graph + a_graph, *video_args,
                                "-map", "[aout]", "-c:a", "aac",
                                "-b:a", f"{enc.aac_bitrate_kbps}k", "-ar", str(VIDEO_RATE),
                                "-ac", str(channels), "-map_metadata", "-1",
                                "-map_chapters", "-1", str(tmp)],
                   what=f"encoding the MP4 of {job.source}")

    got, gain = _encode_verified(ctx.ffmpeg, dest, profile, "MP4 audio", encode)
    return mode, got, gain


def _still(ctx: Context, show: ShowSettings) -> Path:
    art = ctx.workspace.abs(show.artwork) if show.artwork else None
    if art is None or not art.is_file():
        raise PipelineError(f"show {show.id!r} has audio-only bumpers but its artwork "
                            f"{show.artwork!r} is missing, so there is no picture to show "
                            "during them; add the artwork or use video bumpers")
    artwork_size(art, ctx.settings.ingest.max_artwork_pixels)  # ffmpeg would decode it all
    return art


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    show = ctx.settings.show(job.show)
    master = ctx.input(Artifact.MASTER_AUDIO)
    channels = 1 if job.probe and job.probe.audio.channels == 1 else 2
    profile = delivery_profile(ctx.settings.loudness, channels)
    bumpers = _prepare_bumpers(job, ctx, show, profile, delivery_rate(job.kind), channels)
    fade = _fade(ctx, bumpers)
    offset = max(bumpers["intro"].duration_s - fade, 0.0) if "intro" in bumpers else 0.0
    out_dir = ws.job_dir(job.id)
    mp3 = out_dir / "encoded.mp3"
    final, trims = {}, {}
    final["audio"], trims["audio"] = _encode_mp3(ctx, job, master, bumpers, channels, profile,
                                                 mp3)
    job = job.with_file(Artifact.ENCODED_AUDIO, ws.rel(mp3))
    video_path = None
    if job.kind == "video":
        if not ctx.has_input(Artifact.TRIMMED_VIDEO):
            raise PipelineError(f"episode {job.id} is a video but has no trimmed picture; run "
                                f"`learncast retry {job.id} --from trim`")
        mp4 = out_dir / "encoded.mp4"
        video_path, final["video"], trims["video"] = _encode_mp4(
            ctx, job, ctx.input(Artifact.TRIMMED_VIDEO), master, bumpers, channels, show,
            profile, mp4)
        job = job.with_file(Artifact.ENCODED_VIDEO, ws.rel(mp4))
    log.info("[encode] %s: %s", job.id, ", ".join(f"{k} {v}" for k, v in final.items()))
    loudness = job.results.loudness
    if loudness is not None:
        loudness = loudness.model_copy(update={"final": {k: v.rounded()
                                                         for k, v in final.items()}})
    durations = {"audio": round(_duration(mp3), 3)}
    if Artifact.ENCODED_VIDEO in job.files:
        durations["video"] = round(_duration(ws.abs(job.files[Artifact.ENCODED_VIDEO])), 3)
    return job.with_results(
        timeline=job.timeline.with_intro(offset).with_durations(**durations), loudness=loudness,
        encode=EncodeResult(bumpers=sorted(bumpers), channels=channels, video_path=video_path,
                            trim_gain_db={k: v for k, v in trims.items() if v}))
