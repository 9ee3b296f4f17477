"""Probing media and checking that a recording decodes, with errors a producer can act on.

No `ffprobe` is needed: probing uses PyAV (FFmpeg's libraries, shipped in its wheel), and
processing uses one ffmpeg binary, chosen and checked by `pipeline.ffmpeg` (the static build
inside the `imageio-ffmpeg` wheel unless `[ffmpeg] path` says otherwise), so a fresh machine
needs no system packages. `find_ffmpeg` and `run_ffmpeg` live there and are re-exported here
for the stages that import them from this module.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from pipeline import ffmpeg as ffmpeg_tool
from pipeline.errors import InputError
from pipeline.ffmpeg import find_ffmpeg, run_ffmpeg

__all__ = ["FLAC_OUTPUT", "AudioInfo", "Probe", "VideoInfo", "check_decodes", "find_ffmpeg",
           "probe", "run_ffmpeg"]

log = logging.getLogger(__name__)


#: Output options for the lossless working copies (prepare, trim, normalise). ffmpeg's FLAC
#: encoder otherwise takes its block size from the first decoded frame: after an MP3's encoder
#: delay that is 47 samples, so every block of the copy was 47 samples (ten times slower to
#: decode, and each later stage inherited it), and a cut leaving fewer than 16 samples in the
#: first frame made ffmpeg refuse to write at all ("invalid block size"). 4608 is the
#: encoder's own choice at 44.1/48 kHz.
FLAC_OUTPUT = ("-c:a", "flac", "-frame_size", "4608")


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float
    rotation: int = 0


@dataclass(frozen=True)
class Probe:
    """What a recording is made of; stored on the episode so later stages need not re-probe."""

    container: str
    duration_s: float
    size_bytes: int
    audio: AudioInfo
    video: VideoInfo | None = None

    @property
    def kind(self) -> str:
        return "video" if self.video else "audio"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe:
        video = data.get("video")
        return cls(
            container=data["container"],
            duration_s=data["duration_s"],
            size_bytes=data["size_bytes"],
            audio=AudioInfo(**data["audio"]),
            video=VideoInfo(**video) if video else None,
        )


@dataclass(frozen=True)
class PictureLimits:
    """The largest video picture ingest accepts ([ingest] max_video_*)."""

    width: int
    height: int
    pixels: int


_NOT_MEDIA = (
    "it is not an audio or video file ffmpeg can read. Export the recording as MP4, MOV, "
    "MKV, WebM, MP3, M4A, WAV, FLAC or OGG and drop it into the inbox again"
)


def probe(path: Path, *, limits: PictureLimits | None = None) -> Probe:
    """Read container and stream facts; raise InputError naming what makes the file unusable.

    With `limits`, a video picture larger than they allow is refused from the headers, before
    a frame is decoded: opening a file decodes a first frame to learn its format, and a
    2.6 MB file can hold a 16000x16000 frame (0.8 GB to decode). FFmpeg's own `max_pixels`
    makes that first decode fail instead of allocating.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError("the file is empty (0 bytes). Copy the recording again; "
                         "if it was still uploading, wait until the upload has finished")
    options = {"max_pixels": str(limits.pixels)} if limits else None
    try:
        container = av.open(str(path), metadata_errors="ignore", options=options)
    except av.error.InvalidDataError as exc:
        raise InputError(
            "ffmpeg cannot read it as audio or video: either it is not a media file, or it is "
            "damaged or cut off (an MP4/MOV whose recording or copy did not finish looks like "
            "this). Export or copy the recording again as MP4, MOV, MKV, WebM, MP3, M4A, WAV, "
            f"FLAC or OGG and drop it into the inbox ({exc.strerror or exc})") from exc
    except av.error.FFmpegError as exc:
        raise InputError(f"the file cannot be opened as media ({exc}). It may be truncated "
                         "or damaged: export or copy it again") from exc
    with container:
        audio_streams = list(container.streams.audio)
        video_streams = [
            s for s in container.streams.video
            if not s.disposition & av.stream.Disposition.attached_pic  # cover art is no video
        ]
        if not audio_streams and not video_streams:
            raise InputError(_NOT_MEDIA)
        if not audio_streams:
            raise InputError("the file has no audio track, so there is nothing to publish or "
                             "caption. Export the recording again with its sound")
        a = audio_streams[0]
        if not a.sample_rate or not a.channels:
            raise InputError(f"the audio track ({a.codec_context.name}) has no sample rate or "
                             "channel layout; the file is damaged: export it again")
        audio = AudioInfo(codec=a.codec_context.name, sample_rate=int(a.sample_rate),
                          channels=int(a.channels))
        duration = _duration(container, a)
        video = None
        if video_streams:
            v = video_streams[0]
            if limits is not None:
                _check_picture(int(v.width or 0), int(v.height or 0), limits)
            rate = v.average_rate or v.guessed_rate or Fraction(0)
            video = VideoInfo(codec=v.codec_context.name, width=int(v.width or 0),
                              height=int(v.height or 0), fps=round(float(rate), 3),
                              rotation=_rotation(container, v))
        return Probe(container=container.format.name, duration_s=duration, size_bytes=size,
                     audio=audio, video=video)


def _check_picture(width: int, height: int, limits: PictureLimits) -> None:
    too = []
    if width > limits.width:
        too.append(f"wider than {limits.width} px (ingest.max_video_width)")
    if height > limits.height:
        too.append(f"taller than {limits.height} px (ingest.max_video_height)")
    if width * height > limits.pixels:
        too.append(f"more than {limits.pixels:,} pixels (ingest.max_video_pixels)")
    if too:
        listed = ", ".join(too[:-1]) + (" and " if len(too) > 1 else "") + too[-1]
        raise InputError(f"the video picture is {width}x{height} px, {listed}; it "
                         "was not decoded. Export the video at a normal size (1920x1080 is "
                         "plenty), or raise the limit in config/learncast.toml")


def _duration(container: Any, stream: Any) -> float:
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base), 3)
    if container.duration:
        return round(container.duration / av.time_base, 3)
    return 0.0


def _rotation(container: Any, stream: Any) -> int:
    """Display rotation of phone videos, read from the first decoded frame's display matrix."""
    try:
        frame = next(container.decode(stream))
    except (StopIteration, av.error.FFmpegError):
        return 0
    return round(getattr(frame, "rotation", 0) or 0) % 360


_DECODE_ERROR = re.compile(
    r"(invalid data|partial file|truncat|error while decoding|header missing|"
    r"corrupt|invalid frame|moov atom not found|end of file|could not find)", re.I
)


def check_decodes(ffmpeg: str, path: Path, probe_: Probe) -> None:
    """Decode the whole audio track once, so damaged or cut-off files are rejected at ingest.

    Cheap (audio only, no output) and the only reliable test: containers happily report a
    duration for a file whose second half is missing.
    """
    _check_wav_size(path, probe_)
    with tempfile.TemporaryFile() as progress:  # a file: a full stdout pipe would stall it
        result = ffmpeg_tool.run(ffmpeg, ["-i", str(path), "-map", "0:a:0", "-f", "null",
                                          "-progress", "pipe:1", "-"],
                                 what=f"decoding {path.name}", stdout=progress)
        progress.seek(0)
        progress_text = progress.read().decode("utf-8", "replace")
    lines = [ffmpeg_tool.strip_context(line) for line in result.log.errors]
    errors = [line for line in lines if _DECODE_ERROR.search(line)]
    if result.returncode != 0 or errors:
        detail = "; ".join((errors or [result.first_error])[:3])
        raise InputError(
            f"the audio cannot be decoded completely, so the file is truncated or damaged "
            f"({detail}). Copy or export the recording again and drop it into the inbox"
        )
    decoded = _last_out_time(progress_text)
    # An MP3 cut short decodes cleanly; only its header's duration gives it away. Raw ADTS
    # AAC has no such header (ffmpeg guesses from the bitrate), so it is not judged this way.
    if (decoded is not None and probe_.container not in _ESTIMATED_DURATION
            and decoded < probe_.duration_s * 0.9 - 0.5):
        raise InputError(
            f"the file is truncated: its header announces {probe_.duration_s:.1f} s but only "
            f"{decoded:.1f} s of audio could be decoded. Copy or export the recording again"
        )


_ESTIMATED_DURATION = {"aac", "ac3", "eac3", "mp2", "dts"}


def _last_out_time(progress: str) -> float | None:
    values = re.findall(r"^out_time_us=(\d+)$", progress, re.M)
    return int(values[-1]) / 1e6 if values else None


def _check_wav_size(path: Path, probe_: Probe) -> None:
    """A WAV cut short still opens; its header's data size is what gives it away."""
    if probe_.container != "wav":
        return
    with open(path, "rb") as fh:
        header = fh.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := fh.read(8):
            if len(chunk) < 8:
                break
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                available = os.fstat(fh.fileno()).st_size - fh.tell()
                if csize not in (0, 0xFFFFFFFF) and available < csize:
                    raise InputError(
                        f"the WAV file is truncated: its header announces {csize} bytes of "
                        f"audio but only {available} are present. Copy it again"
                    )
                return
            fh.seek(csize + (csize & 1), os.SEEK_CUR)
