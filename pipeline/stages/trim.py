"""Cut leading/trailing silence and room noise; optionally shorten long internal pauses.

The cut points come from `pipeline.audio.silence` (threshold relative to the measured noise
floor, padding kept around the first and last sound). Audio is cut sample-accurately with
`atrim` into a lossless FLAC (`trimmed_audio`).

Video (`trimmed_video`, picture only; encode muxes it with the finished audio) is cut at the
*same* instants as the audio, so A/V stays in sync. Two ways, chosen per episode:

- **stream copy** (no picture re-encode, I/O-bound, seconds for an hour): used when only the
  head/tail are cut, the picture needs no other change (H.264, within the size limit), and a
  keyframe lies at most `trim.keyframe_snap_s` before the ideal start. The start is moved back
  to that keyframe and the audio is cut at that keyframe too — the episode keeps up to that
  much more leading silence, which is harmless, and the cut is exact (stream copy can only
  start on a keyframe). The end is snapped to a frame boundary.
- **re-encode** (x264, frame-exact): otherwise (no keyframe close enough, pauses shortened,
  a picture that must be downscaled or is not H.264).

Without anything to cut the original video is referenced as is. The kept stretches become the
episode's Timeline (recording time → content time, read by every later stage that places
something in time); the floor, threshold and video path taken are the TrimResult.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

from pipeline.artifacts import Artifact, Timeline
from pipeline.audio.silence import detect, window_levels
from pipeline.config import TrimSettings
from pipeline.ffmpeg import filter_complex_file
from pipeline.fsutil import atomic_path, atomic_write_text
from pipeline.media import FLAC_OUTPUT, VideoInfo, run_ffmpeg
from pipeline.models import Job, TrimResult
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.SOURCE_AUDIO,)
USES = (Artifact.ORIGINAL,)
MAKES = (Artifact.TRIMMED_AUDIO, Artifact.TRIMMED_VIDEO)

#: Cuts closer than this to the file's ends are not worth a re-encode.
_NEGLIGIBLE_S = 0.02
#: ffmpeg moves an input seek back by 3/23 s for streams with B-frames; aim past it.
_SEEK_BIAS_S = 0.15


@dataclass(frozen=True)
class CutPlan:
    segments: list[tuple[float, float]]  # kept [start, end) stretches, seconds
    duration_s: float

    @property
    def start(self) -> float:
        return self.segments[0][0]

    @property
    def end(self) -> float:
        return self.segments[-1][1]

    @property
    def is_noop(self) -> bool:
        return (len(self.segments) == 1 and self.start <= _NEGLIGIBLE_S
                and self.end >= self.duration_s - _NEGLIGIBLE_S)


def plan_cut(levels_duration: float, first: float | None, last: float | None,
             pauses: list[tuple[float, float]], cfg: TrimSettings) -> CutPlan:
    """Kept segments: [first - padding, last + padding], minus the middle of long pauses."""
    if first is None or last is None:
        return CutPlan([(0.0, levels_duration)], levels_duration)
    start = max(0.0, first - cfg.padding_s)
    end = min(levels_duration, last + cfg.padding_s)
    segments: list[tuple[float, float]] = []
    cursor = start
    if cfg.shorten_pauses:
        half = cfg.max_pause_s / 2
        for a, b in pauses:
            if b - a > cfg.max_pause_s and start < a and b < end:
                segments.append((cursor, a + half))
                cursor = b - half
    segments.append((cursor, end))
    return CutPlan(segments, levels_duration)


def run(job: Job, ctx: Context) -> Job:
    cfg = ctx.settings.trim
    ws = ctx.workspace
    source = ctx.input(Artifact.SOURCE_AUDIO)
    rate = min(job.probe.audio.sample_rate if job.probe else 16000, 16000)
    levels = window_levels(ctx.ffmpeg, source, rate=rate)
    activity = detect(levels, margin_db=cfg.threshold_db, min_sound_s=cfg.min_sound_s,
                      min_pause_s=cfg.max_pause_s if cfg.shorten_pauses else 0.0)
    if cfg.enabled:
        plan = plan_cut(activity.duration_s, activity.first_sound_s, activity.last_sound_s,
                        activity.pauses, cfg)
    else:
        plan = CutPlan([(0.0, activity.duration_s)], activity.duration_s)
    video = job.probe.video if job.probe else None
    out_dir = ws.job_dir(job.id)
    record: dict[str, object] = {
        "floor_db": round(activity.floor_db, 1),
        "threshold_db": round(activity.threshold_db, 1),
        "sound_found": activity.first_sound_s is not None,
    }
    if video is not None:
        plan, path = _cut_video(ctx, job, ctx.input(Artifact.ORIGINAL), video, plan, out_dir,
                                cfg, record)
        job = job.with_file(Artifact.TRIMMED_VIDEO, path)
    _cut_audio(ctx, source, plan, out_dir / "trimmed.flac")
    removed_pauses = [(round(b0, 3), round(a1, 3))
                      for (_, b0), (a1, _) in zip(plan.segments, plan.segments[1:],
                                                  strict=False)]
    timeline = Timeline(source_duration_s=round(plan.duration_s, 6),
                        kept=tuple((round(a, 6), round(b, 6)) for a, b in plan.segments))
    result = TrimResult.model_validate({**record, "removed_pauses": removed_pauses})
    log.info("[trim] %s: kept %.2f-%.2f s of %.2f s (floor %.1f dBFS, threshold %.1f dBFS, "
             "%d pause(s) shortened)", job.id, plan.start, plan.end, plan.duration_s,
             activity.floor_db, activity.threshold_db, len(removed_pauses))
    return job.with_file(Artifact.TRIMMED_AUDIO, ws.rel(out_dir / "trimmed.flac")).with_results(
        trim=result, timeline=timeline).with_measurements(
        trim_cut_head_s=round(plan.start, 3),
        trim_cut_tail_s=round(max(plan.duration_s - plan.end, 0.0), 3),
        trim_removed_s=round(plan.duration_s - timeline.content_duration_s, 3))


def _cut_audio(ctx: Context, source: Path, plan: CutPlan, dest: Path) -> None:
    """Sample-accurate cut of the lossless source into FLAC; streaming, any length."""
    if len(plan.segments) == 1:
        a, b = plan.segments[0]
        args = ["-i", str(source), "-map", "0:a:0",
                "-af", f"atrim=start={a:.6f}:end={b:.6f},asetpts=PTS-STARTPTS"]
    else:
        parts = [f"[0:a]atrim=start={a:.6f}:end={b:.6f},asetpts=PTS-STARTPTS[s{i}]"
                 for i, (a, b) in enumerate(plan.segments)]
        joined = "".join(f"[s{i}]" for i in range(len(plan.segments)))
        graph = ";".join(parts) + f";{joined}concat=n={len(plan.segments)}:v=0:a=1[out]"
        script = dest.with_suffix(".filter.txt")
        atomic_write_text(script, graph)
        args = ["-i", str(source), *filter_complex_file(ctx.ffmpeg, script), "-map", "[out]"]
    with atomic_path(dest) as tmp:
        run_ffmpeg(ctx.ffmpeg, [*args, *FLAC_OUTPUT, str(tmp)],
                   what=f"trimming the audio of {source.name}")


def _snap(t: float, fps: float) -> float:
    return round(t * fps) / fps if fps > 0 else t


def _keyframe_at_or_before(path: Path, t: float) -> float | None:
    """Time of the last video keyframe at or before `t` (packets only, nothing decoded)."""
    best: float | None = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        offset = (container.start_time or 0) / av.time_base
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            when = float(packet.pts * packet.time_base) - offset
            if when > t + 1e-6:
                # demux order is decode order; B-frames may come late, so look a little further
                if best is not None and when > t + 2.0:
                    break
                continue
            if packet.is_keyframe and (best is None or when > best):
                best = when
    return best


def _video_start(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.start_time is None or stream.time_base is None:
            return 0.0
        return max(float(stream.start_time * stream.time_base), 0.0)


def _needs_picture_change(video: VideoInfo, max_height: int) -> bool:
    return (video.codec != "h264" or video.height > max_height or video.rotation != 0
            or video.width % 2 or video.height % 2)


def _cut_video(ctx: Context, job: Job, original: Path, video: VideoInfo, plan: CutPlan,
               out_dir: Path, cfg: TrimSettings, record: dict[str, object],
               ) -> tuple[CutPlan, str]:
    """Cut the picture at the plan's instants; returns the (possibly snapped) plan and path."""
    ws = ctx.workspace
    fps = video.fps
    segments = [(_snap(a, fps), min(_snap(b, fps), plan.duration_s)) for a, b in plan.segments]
    plan = CutPlan(segments, plan.duration_s)
    if plan.is_noop:
        record["video_path"] = "unchanged"
        return CutPlan([(0.0, plan.duration_s)], plan.duration_s), job.original
    dest = out_dir / "trimmed.mp4"
    max_height = ctx.settings.encode.video_max_height
    copy_ok = (len(plan.segments) == 1 and cfg.keyframe_snap_s > 0
               and not _needs_picture_change(video, max_height))
    keyframe = _keyframe_at_or_before(original, plan.start) if copy_ok else None
    next_key = _keyframe_at_or_before(original, keyframe + 2 * _SEEK_BIAS_S) if keyframe else 0
    if (keyframe is not None and keyframe >= 0.5 and next_key == keyframe
            and plan.start - keyframe <= cfg.keyframe_snap_s):
        plan = CutPlan([(keyframe, plan.end)], plan.duration_s)
        record["video_path"] = "stream-copy"
        record["keyframe_snap_s"] = round(plan.start - keyframe, 3)
        with atomic_path(dest) as tmp:
            # ffmpeg seeks ~0.13 s before -ss when B-frames may be present, then to the
            # keyframe at or before that; aiming just past our keyframe lands exactly on it.
            run_ffmpeg(ctx.ffmpeg, ["-ss", f"{keyframe + _SEEK_BIAS_S:.6f}", "-i", str(original),
                                    "-t", f"{plan.end - keyframe:.6f}", "-map", "0:v:0",
                                    "-an", "-sn", "-dn", "-c:v", "copy",
                                    "-avoid_negative_ts", "make_zero", str(tmp)],
                       what=f"cutting the video of {job.source} (stream copy)")
        # With B-frames the copied picture starts a frame or two after zero (its first
        # frame is shown at that offset): start the audio that much earlier to stay in sync.
        lead = _video_start(dest)
        if lead > 0:
            plan = CutPlan([(max(keyframe - lead, 0.0), plan.end)], plan.duration_s)
            record["video_start_offset_s"] = round(lead, 3)
        return plan, ws.rel(dest)
    record["video_path"] = "re-encode"
    select = "+".join(f"between(t,{a:.6f},{b - 0.5 / max(fps, 1):.6f})"
                      for a, b in plan.segments)
    vf = f"select='{select}',setpts=N/FRAME_RATE/TB,{scale_filter(max_height)}"
    enc = ctx.settings.encode
    with atomic_path(dest) as tmp:
        run_ffmpeg(ctx.ffmpeg, ["-i", str(original), "-map", "0:v:0", "-an", "-sn", "-dn",
                                "-vf", vf, "-c:v", "libx264", "-preset", enc.video_preset,
                                "-crf", str(enc.video_crf), "-pix_fmt", "yuv420p",
                                str(tmp)],
                   what=f"cutting the video of {job.source} (re-encode)")
    return plan, ws.rel(dest)


def scale_filter(max_height: int) -> str:
    """Downscale to at most `max_height` (aspect kept, even sizes for 4:2:0), never upscale."""
    return (f"scale=w=-2:h='min({max_height},trunc(ih/2)*2)':flags=lanczos,"
            "setsar=1")
