"""Cutting a soundbite with pydub: one short span, faded, loudness-matched, exported as MP3.

pydub holds what it decodes in memory, which is why the episode itself is never given to it
(joins and the episode's encode run in ffmpeg's filter graph). A soundbite is at most a
minute, so here it is the right tool: `from_file(..., start_second=, duration=)` decodes only
that span (ffmpeg skips to it and hands back the span alone), the fades and the gain are one
line each, and `export` writes the MP3 through the pipeline's own ffmpeg.

Loudness: the faded clip is measured (ITU-R BS.1770 with true peak, `pipeline.audio.loudness`)
and brought to the episode's delivery target by the same plan as the normalise stage: one
linear gain, plus a 4x-oversampled true-peak limiter only when the peaks would pass the
ceiling (pydub has no limiter, so the plan's filter runs in the export's ffmpeg). The
exported MP3 is measured again — that is the figure recorded — and corrected (up to three
times) while it is more than 0.3 LU off, as the limiter or the encoder moved it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.audio.loudness import SILENT_LUFS, Loudness, Profile, measure, plan_gain
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_path

log = logging.getLogger(__name__)

#: Further off the target than this after the export → a corrective pass (LU), at most
#: MAX_CORRECTIONS of them (the limiter takes back some of the gain it was planned with).
CORRECT_ABOVE_LU = 0.3
MAX_CORRECTIONS = 3


@dataclass(frozen=True)
class ClipFigures:
    """What the cut measured: before the gain (the span as it was), the gain applied, and
    the exported MP3."""

    before: Loudness
    gain_db: float
    limited: bool
    final: Loudness
    duration_s: float


def use_ffmpeg(ffmpeg: str) -> None:
    """pydub runs `AudioSegment.converter`; make that the pipeline's ffmpeg."""
    from pydub import AudioSegment

    AudioSegment.converter = ffmpeg


def cut(ffmpeg: str, source: Path, dest: Path, *, codec: str, start_s: float, duration_s: float,
        profile: Profile, headroom_db: float, fade_in_s: float, fade_out_s: float,
        bitrate_kbps: int, sample_rate: int,
        finish: Callable[[Path], None] | None = None) -> ClipFigures:
    """Write `dest` (MP3): `duration_s` of `source` from `start_s`, faded and matched.

    `codec` is the source's audio codec (as PyAV names it); telling pydub skips its ffprobe
    call, so no ffprobe (or other ffmpeg) on PATH is ever run. `finish` (tagging) runs on the
    MP3 before it takes its final name."""
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError

    use_ffmpeg(ffmpeg)
    try:
        clip = AudioSegment.from_file(str(source), codec=codec, start_second=round(start_s, 3),
                                      duration=round(duration_s, 3))
    except CouldntDecodeError as exc:
        tail = "\n".join(str(exc).strip().splitlines()[-3:])
        raise PipelineError(f"could not read {duration_s:.1f} s of {source.name} from "
                            f"{start_s:.1f} s for a soundbite:\n{tail}\nRun `learncast retry "
                            "ID --from normalise` to make the master again") from None
    if len(clip) < 500:
        raise PipelineError(f"the soundbite at {start_s:.1f} s of {source.name} came out "
                            f"{len(clip) / 1000:.2f} s long; it lies past the end of the "
                            "episode. Fix its start in the sidecar")
    clip = clip.fade_in(round(fade_in_s * 1000)).fade_out(round(fade_out_s * 1000))
    probe_wav = dest.with_name(f"{dest.stem}.measure.wav")
    try:
        clip.export(str(probe_wav), format="wav")
        before = measure(ffmpeg, probe_wav)
    finally:
        probe_wav.unlink(missing_ok=True)
    if before.integrated <= SILENT_LUFS:
        raise PipelineError(f"the soundbite at {start_s:.1f} s of the episode is silent "
                            f"({before}); choose another span in the sidecar's soundbites")
    extra = 0.0
    with atomic_path(dest) as tmp:
        for _ in range(1 + MAX_CORRECTIONS):  # the plan, then corrections
            plan = plan_gain(before, profile, rate=sample_rate, headroom_db=headroom_db,
                             extra_gain_db=extra)
            clip.export(str(tmp), format="mp3", bitrate=f"{bitrate_kbps}k",
                        parameters=["-af", plan.filter, "-write_xing", "1"])
            final = measure(ffmpeg, tmp)
            off = profile.integrated - final.integrated
            if abs(off) <= CORRECT_ABOVE_LU:
                break
            extra += off
        if finish is not None:
            finish(tmp)
    if plan.limited:
        log.info("[soundbites] %s: its peaks needed the true-peak limiter to reach the target",
                 dest.name)
    return ClipFigures(before.rounded(), round(plan.gain_db, 2), plan.limited,
                       final.rounded(), round(len(clip) / 1000, 3))
