"""Audiograms: a picture for an audio-only episode, composed with moviepy, streamed to ffmpeg.

Video podcast apps, LMS players and chat channels want a picture. An audiogram is the show or
episode artwork, the title, level bars that move with the sound and the captions burned in,
over the episode's own audio. This is the short, composed media moviepy is good at: the still
layers (background, artwork, title as a `TextClip`) are composed once into one `ImageClip`, the
moving ones are custom frame clips (`VideoClip(frame_function=...)`), and a
`CompositeVideoClip` puts them together per frame and streams the frames to ffmpeg.

Nothing here grows with the episode's length: the levels come from a streaming ffmpeg decode
(about a quarter of a second of samples is held), a caption is drawn when its cue comes up
and only the current one is kept, and moviepy hands ffmpeg one frame at a time. The animated
layers cover only their own boxes and carry no mask, so moviepy pastes them instead of
alpha-compositing the whole frame.

moviepy copies its ffmpeg path into each I/O module at import time; `use_ffmpeg` points all of
them at the pipeline's binary, so no other ffmpeg on PATH is ever run.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipeline.audio.id3 import cover_jpeg
from pipeline.audio.mp4 import package_mp4
from pipeline.captions.segmenter import Cue
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path
from pipeline.models import ChapterMark

log = logging.getLogger(__name__)

#: Caption text is at most this fraction of the frame height (48 px at 720p): on a phone
#: showing a 720p video 360 pt wide that is about 13 pt, the size of body text in apps.
CAPTION_HEIGHT_FRACTION = 1 / 15
#: Sample text with ordinary letter widths, cut to a profile's line length to size the font.
_SAMPLE = "Give feedback your team can act on, then check what changed. " * 4
_LEVEL_RATE = 16000  # levels are computed from a 16 kHz mono decode
_WINDOW = 2048  # samples per level window (128 ms)
HOLD_GAP_S = 0.3
_LOW_DB, _HIGH_DB = -70.0, -30.0  # band power mapped to 0..1 bar height
#: Speech has less energy per band the higher it goes; tilting by this much per octave
#: (around 500 Hz) lets the treble bars move as much as the bass ones.
_TILT_DB_PER_OCTAVE = 4.0


def use_ffmpeg(path: str) -> None:
    """Make moviepy run `path` (it imported its own ffmpeg's path into several modules)."""
    import moviepy.config as config
    from moviepy.audio.io import ffmpeg_audiowriter, readers
    from moviepy.video.io import ffmpeg_reader, ffmpeg_tools, ffmpeg_writer

    for module in (config, ffmpeg_audiowriter, readers, ffmpeg_reader, ffmpeg_tools,
                   ffmpeg_writer):
        module.FFMPEG_BINARY = path  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def crop(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y:self.y + self.h, self.x:self.x + self.w]


@dataclass(frozen=True)
class Layout:
    """Where each layer goes on a `width` × `height` frame."""

    width: int
    height: int
    art: Box
    title: Box
    bars: Box
    captions: Box


def layout_for(width: int, height: int) -> Layout:
    """Landscape (16:9): artwork left, title and bars right, captions across the bottom.
    Square or portrait: artwork and title on top, bars, then captions."""
    m = round(min(width, height) * 0.06)
    if width >= height * 1.3:
        art = round(height * 0.5)
        right = m + art + m
        title = Box(right, m, width - right - m, round(art * 0.58))
        bars = Box(right, m + round(art * 0.62), width - right - m, art - round(art * 0.62))
        top = m + art + round(m * 0.6)
        captions = Box(m, top, width - 2 * m, height - top - round(m * 0.5))
        return Layout(width, height, Box(m, m, art, art), title, bars, captions)
    art = round(min(width, height) * 0.40)
    right = m + art + m
    title = Box(right, m, width - right - m, art)
    bars_top = m + art + round(m * 0.5)
    bars = Box(m, bars_top, width - 2 * m, round(height * 0.14))
    top = bars_top + bars.h + round(m * 0.5)
    captions = Box(m, top, width - 2 * m, height - top - round(m * 0.5))
    return Layout(width, height, Box(m, m, art, art), title, bars, captions)


def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """The configured font file, else Pillow's built-in scalable font (Aileron)."""
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError as exc:
            raise PipelineError(f"audiogram font {path!r} cannot be loaded ({exc}); set "
                                "[audiogram] font to a TrueType/OpenType file, or clear it to "
                                "use the built-in font") from None
    font = ImageFont.load_default(size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise PipelineError("this Pillow has no FreeType support, so captions cannot be drawn "
                            "at a readable size; install Pillow with FreeType, or set "
                            "[audiogram] font")
    return font


def caption_font_px(font_path: str, box: Box, max_chars: int, max_lines: int,
                    frame_height: int) -> int:
    """The largest caption size (≤ 1/15 of the frame height) at which a line of the profile's
    length fits the caption box, and the profile's lines fit its height."""
    sample = _SAMPLE[:max_chars]
    size = max(12, round(frame_height * CAPTION_HEIGHT_FRACTION))
    while size > 12:
        font = load_font(font_path, size)
        if font.getlength(sample) <= box.w - size and max_lines * size * 1.3 + size * 0.6 <= box.h:
            break
        size -= 1
    return size


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Words into at most `max_lines` lines of `width` px; the last line ends in … if cut."""
    lines: list[str] = []
    current = ""
    words = text.split()
    for i, word in enumerate(words):
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width or not current:
            current = candidate
            continue
        lines.append(current)
        current = word
        if len(lines) == max_lines:
            current = ""
            rest = " ".join([lines[-1], *words[i:]])
            lines[-1] = _ellipsis(rest, font, width)
            break
    if current:
        lines.append(current)
    return lines


def _ellipsis(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


# --- levels: the moving bars ----------------------------------------------------------------


class LevelMeter:
    """Band levels (0..1) of the audio around a time, from a streaming ffmpeg decode.

    Frames are asked for in order, so the decode runs once from start to end and only the
    samples of the current window are kept; asking for an earlier time restarts the decode
    there (moviepy reads frame 0 once to learn the clip's size).
    """

    def __init__(self, ffmpeg: str, audio: Path, bands: int, fps: float) -> None:
        self.ffmpeg, self.audio, self.bands = ffmpeg, audio, bands
        freqs = np.fft.rfftfreq(_WINDOW, 1 / _LEVEL_RATE)
        edges = np.geomspace(90.0, 7000.0, bands + 1)
        self._band_of = np.digitize(freqs, edges) - 1  # -1 / bands = outside
        centres = np.sqrt(edges[:-1] * edges[1:])
        self._tilt = (_TILT_DB_PER_OCTAVE * np.log2(centres / 500.0)).astype(np.float32)
        self._counts = np.bincount(self._band_of[(self._band_of >= 0)
                                                 & (self._band_of < bands)],
                                   minlength=bands).clip(min=1)
        self._hann = np.hanning(_WINDOW).astype(np.float32)
        self._decay = 0.6 ** (25.0 / fps)  # bars fall at the same speed whatever the fps
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # sample index of _buf[0]
        self._eof = False
        self._last: np.ndarray = np.zeros(bands, np.float32)
        self._last_t = -1.0

    def _open(self, sample: int) -> None:
        self.close()
        self._proc = subprocess.Popen(
            [self.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-ss",
             f"{sample / _LEVEL_RATE:.6f}", "-i", str(self.audio), "-map", "0:a:0", "-ac", "1",
             "-ar", str(_LEVEL_RATE), "-f", "f32le", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._buf = np.zeros(0, np.float32)
        self._start, self._eof = sample, False

    def _samples(self, first: int, count: int) -> np.ndarray:
        """`count` samples from sample index `first` (zeros before the start and past the
        end)."""
        lead = max(-first, 0)
        first, count = first + lead, count - lead
        if self._proc is None or first < self._start:
            self._open(first)
        assert self._proc is not None and self._proc.stdout is not None
        need = first + count - self._start
        while len(self._buf) < need and not self._eof:
            chunk = self._proc.stdout.read(16384 * 4)
            if not chunk:
                self._eof = True
                break
            data = np.frombuffer(chunk[:len(chunk) // 4 * 4], "<f4")
            self._buf = np.concatenate((self._buf, data))
        # keep only from `first` on: memory is one window, not the episode
        drop = min(first - self._start, len(self._buf))
        self._buf = self._buf[drop:]
        self._start += drop
        out = self._buf[:count]
        return np.pad(out, (lead, count - len(out)))

    def levels(self, t: float) -> np.ndarray:
        center = round(t * _LEVEL_RATE)
        window = self._samples(center - _WINDOW // 2, _WINDOW) * self._hann
        power = np.abs(np.fft.rfft(window)) ** 2 / (_WINDOW * _WINDOW / 4)
        inside = (self._band_of >= 0) & (self._band_of < self.bands)
        sums = np.bincount(self._band_of[inside], weights=power[inside],
                           minlength=self.bands)[:self.bands]
        db = 10 * np.log10(sums / self._counts + 1e-12) + self._tilt
        level = np.clip((db - _LOW_DB) / (_HIGH_DB - _LOW_DB), 0.0, 1.0).astype(np.float32)
        if 0 < t - self._last_t < 0.5:  # following on: bars rise at once, fall gently
            level = np.maximum(level, self._last * self._decay)
        self._last, self._last_t = level, t
        return level

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc.kill()
            self._proc.wait()
            self._proc = None


class Bars:
    """The level-bars layer: its box of the still background with bars drawn on it."""

    def __init__(self, still: np.ndarray, box: Box, meter: LevelMeter, colour: tuple[int, ...]
                 ) -> None:
        self.base = box.crop(still).copy()
        self.box, self.meter = box, meter
        self.colour = np.array(colour[:3], np.uint8)
        n = meter.bands
        self.pitch = box.w / n
        self.bar_w = max(2, int(self.pitch * 0.62))

    def frame(self, t: float) -> np.ndarray:
        out = self.base.copy()
        levels = self.meter.levels(t)
        mid = self.box.h // 2
        for i, level in enumerate(levels):
            half = max(1, int(level * (mid - 1)))
            x = int(i * self.pitch + (self.pitch - self.bar_w) / 2)
            out[mid - half:mid + half, x:x + self.bar_w] = self.colour
        return out


class Captions:
    """The burned-in captions layer: its box of the still background, with the cue on screen
    at `t` drawn on a dark panel (contrast whatever the artwork). Only the current cue's
    drawing is kept."""

    def __init__(self, still: np.ndarray, box: Box, cues: Sequence[Cue], font_path: str,
                 font_px: int) -> None:
        self.base = box.crop(still).copy()
        # A caption stays up across a gap shorter than HOLD_GAP_S to the next one: in a
        # picture, a panel vanishing for a frame or two between cues reads as flicker.
        ordered = sorted(cues, key=lambda c: c.start)
        self.cues = [dataclasses.replace(c, end=nxt.start)
                     if 0 < nxt.start - c.end < HOLD_GAP_S else c
                     for c, nxt in itertools.pairwise(ordered)] + ordered[-1:]
        self.box = box
        self.starts = [c.start for c in self.cues]
        self.font_path, self.font_px = font_path, font_px
        self._cached: tuple[int, np.ndarray] | None = None
        self.smallest_px = font_px if cues else 0

    def cue_at(self, t: float) -> int | None:
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.cues[i].end:
            return i
        return None

    def frame(self, t: float) -> np.ndarray:
        i = self.cue_at(t)
        if i is None:
            return self.base
        if self._cached is None or self._cached[0] != i:
            self._cached = (i, self._draw(self.cues[i]))
        return self._cached[1]

    def _draw(self, cue: Cue) -> np.ndarray:
        lines = [line for line in cue.lines if line.strip()] or [""]
        size = self.font_px
        font = load_font(self.font_path, size)
        widest = max(font.getlength(line) for line in lines)
        while widest > self.box.w - size and size > self.font_px * 0.6:
            size -= 1  # a reviewer's line longer than the profile allows: shrink, never cut
            font = load_font(self.font_path, size)
            widest = max(font.getlength(line) for line in lines)
        self.smallest_px = min(self.smallest_px, size)
        step = round(size * 1.3)
        pad = round(size * 0.3)
        height = step * len(lines) + 2 * pad
        top = self.box.h - height  # bottom-aligned, like broadcast captions
        image = Image.fromarray(self.base.copy())
        panel = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(panel)
        left = (self.box.w - widest) / 2 - pad
        draw.rounded_rectangle((left, top, left + widest + 2 * pad, self.box.h - 1),
                               radius=pad, fill=(0, 0, 0, 200))
        image = Image.alpha_composite(image.convert("RGBA"), panel)
        draw = ImageDraw.Draw(image)
        for k, line in enumerate(lines):
            x = (self.box.w - font.getlength(line)) / 2
            draw.text((x, top + pad + k * step), line, font=font, fill=(255, 255, 255, 255))
        return np.asarray(image.convert("RGB"))


def clip_cues(cues: Sequence[Cue], start: float, duration: float) -> list[Cue]:
    """The cues shown during [start, start + duration), in the clip's own time."""
    out = []
    for cue in cues:
        a, b = max(cue.start, start), min(cue.end, start + duration)
        if b - a >= 0.2:
            out.append(dataclasses.replace(cue, start=round(a - start, 3),
                                           end=round(b - start, 3)))
    return out


# --- the still layers ------------------------------------------------------------------------


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(1, round(image.width * scale)),
                            max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def accent(image: Image.Image) -> tuple[int, int, int]:
    """A light colour from the artwork for the bars (its mean hue, brightened)."""
    r, g, b = (int(v) for v in image.convert("RGB").resize((1, 1)).getpixel((0, 0)))  # type: ignore[misc]
    top = max(r, g, b, 1)
    return tuple(min(255, 150 + int(105 * v / top)) for v in (r, g, b))  # type: ignore[return-value]


def compose_still(layout: Layout, artwork: Path | None, title: str, show: str,
                  font_path: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Background (the artwork, blurred and dimmed), the artwork and the title text, composed
    once with moviepy into the frame every other layer is drawn on."""
    from moviepy import ColorClip, CompositeVideoClip, ImageClip, TextClip

    size = (layout.width, layout.height)
    layers: list[Any] = []
    colour = (200, 220, 255)
    if artwork is not None:
        with Image.open(artwork) as im:
            art = im.convert("RGB")
        colour = accent(art)
        blurred = _cover(art, layout.width // 8, layout.height // 8).filter(
            ImageFilter.GaussianBlur(3)).resize(size, Image.Resampling.BILINEAR)
        dim = (np.asarray(blurred, np.float32) * 0.35).astype(np.uint8)
        layers.append(ImageClip(dim))
        square = art.resize((layout.art.w, layout.art.h), Image.Resampling.LANCZOS)
        layers.append(ImageClip(np.asarray(square)).with_position((layout.art.x, layout.art.y)))
    else:
        layers.append(ColorClip(size, color=(24, 32, 48)))
    box = layout.title
    title_px = max(16, round(layout.height * 0.055))
    show_px = max(12, round(title_px * 0.6))
    font = load_font(font_path, title_px)
    lines = wrap(title, font, box.w, max(1, (box.h - show_px * 2) // round(title_px * 1.25)))
    if show:
        small = load_font(font_path, show_px)
        label = show if small.getlength(show) <= box.w else _ellipsis(show, small, box.w)
        layers.append(TextClip(text=label, font=font_path or None, font_size=show_px,
                               color=(*colour, 255), margin=(0, round(show_px * 0.3)))
                      .with_position((box.x, box.y)))
    layers.append(TextClip(text="\n".join(lines), font=font_path or None, font_size=title_px,
                           color="white", interline=round(title_px * 0.25),
                           margin=(0, round(title_px * 0.3)))
                  .with_position((box.x, box.y + round(show_px * 1.8))))
    composite = CompositeVideoClip([layer.with_duration(1) for layer in layers], size=size,
                                   use_bgclip=True)
    still = composite.get_frame(0).astype(np.uint8)
    composite.close()
    return still, colour


# --- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """What was written, for the record and the tests."""

    width: int
    height: int
    fps: float
    frames: int
    caption_px: int
    smallest_caption_px: int
    seconds: float


@dataclass(frozen=True)
class Style:
    """How an audiogram looks and is encoded (from [audiogram] and [encode])."""

    width: int = 1280
    height: int = 720
    fps: float = 15.0
    bands: int = 32
    font: str = ""
    crf: int = 20
    preset: str = "veryfast"
    aac_kbps: int = 160
    max_chars: int = 42
    max_lines: int = 2


def render(ffmpeg: str, audio: Path, dest: Path, *, duration_s: float, cues: Sequence[Cue],
           title: str, show: str, artwork: Path | None, style: Style, channels: int = 2,
           ) -> Rendered:
    """Write `dest` (H.264 + AAC, the encode stage's settings): the composed picture over
    `audio`. `cues` are in the audio's time; `dest` is written in place (callers pass a
    temporary path)."""
    from moviepy import CompositeVideoClip, ImageClip, VideoClip

    use_ffmpeg(ffmpeg)
    started = time.monotonic()
    layout = layout_for(style.width, style.height)
    still, colour = compose_still(layout, artwork, title, show, style.font)
    font_px = caption_font_px(style.font, layout.captions, style.max_chars, style.max_lines,
                              layout.height)
    meter = LevelMeter(ffmpeg, audio, style.bands, style.fps)
    bars = Bars(still, layout.bars, meter, colour)
    captions = Captions(still, layout.captions, cues, style.font, font_px)
    clips = [
        ImageClip(still).with_duration(duration_s),
        VideoClip(frame_function=bars.frame, duration=duration_s).with_position(
            (layout.bars.x, layout.bars.y)),
        VideoClip(frame_function=captions.frame, duration=duration_s).with_position(
            (layout.captions.x, layout.captions.y)),
    ]
    # The still is the background clip (`use_bgclip`): without it moviepy makes the frame
    # transparent, builds a mask for every layer and alpha-composites the whole frame.
    video = CompositeVideoClip(clips, size=(layout.width, layout.height),
                               use_bgclip=True).with_duration(duration_s)
    try:
        video.write_videofile(
            str(dest), fps=style.fps, codec="libx264", preset=style.preset,
            audio=str(audio), audio_codec="aac", logger=None,
            ffmpeg_params=["-map", "0:v:0", "-map", "1:a:0", "-t", f"{duration_s:.3f}",
                           "-crf", str(style.crf),
                           "-b:a", f"{style.aac_kbps}k", "-ar", "48000", "-ac", str(channels),
                           "-map_metadata", "-1", "-pix_fmt", "yuv420p"])
    except OSError as exc:
        tail = "\n".join(str(exc).strip().splitlines()[-5:])
        raise PipelineError(f"ffmpeg failed while writing the audiogram {dest.name}:\n{tail}"
                            ) from None
    finally:
        meter.close()
        video.close()
    frames = int(duration_s * style.fps)
    return Rendered(layout.width, layout.height, style.fps, frames, font_px,
                    captions.smallest_px, round(time.monotonic() - started, 3))


def write_audiogram(ffmpeg: str, audio: Path, dest: Path, *, duration_s: float,
                    cues: Sequence[Cue], title: str, show: str, artwork: Path | None,
                    style: Style, channels: int, chapters: Sequence[ChapterMark],
                    language: str, metadata: dict[str, str]) -> Rendered:
    """The audiogram deliverable: `render`, then the episode MP4's remux (chapter track,
    cover, metadata, `+faststart`), so players see the same chapters as in the MP3."""
    raw = dest.with_name(f"{dest.stem}.raw.mp4")
    with atomic_path(raw) as tmp:
        rendered = render(ffmpeg, audio, tmp, duration_s=duration_s, cues=cues, title=title,
                          show=show, artwork=artwork, style=style, channels=channels)
    try:
        package_mp4(ffmpeg, raw, dest, work=dest.parent, chapters=chapters, captions=None,
                    language=language, cover_jpeg=cover_jpeg(artwork) if artwork else None,
                    metadata={**metadata, "title": title}, duration_s=duration_s)
    finally:
        raw.unlink(missing_ok=True)
    return rendered
