"""Audiogram rendering (moviepy) against a plain ffmpeg still-image encode of the same audio.

Inputs: real speech from the shared clips (bench.memory.make_recording: shuffled rounds, not
one clip looped), 5 and 60 minutes, encoded as the pipeline's MP3 (128 kb/s stereo, 44.1 kHz).
Each tool is one child process started through the lean launcher, so wall time, CPU time and
peak RSS are the kernel's figures for that work alone (ffmpeg children included):

- `learncast-audiogram`: `pipeline.video.audiogram.render` at the default look (1280×720,
  15 fps, 32 bars, [encode] x264 veryfast CRF 20, AAC 160 kb/s), with a caption on screen for
  most of the time (two lines, new every 3.5 s) — busier than most episodes;
- `ffmpeg-still-floor`: ffmpeg encoding the same audio under one still picture (decoded once,
  repeated by the `loop` filter) at the same size, rate and x264/AAC settings: the least any
  audiogram of this size and rate costs.

Goals: wall ≤ 0.5× the audio's duration on 2 cores, and peak RSS that does not grow with the
episode (5 vs 60 minutes). `peak_rss_mb` is the largest process of the tool (for the audiogram,
usually its ffmpeg child, whose MP4 muxer keeps every frame's index until the end, as the
floor's does); `python_rss_mb` is the peak of the Python process that composes the frames.
`LEARNCAST_BENCH_AUDIOGRAM_MINUTES` (default "5,60") picks lengths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.measure import run_measured

REPO = Path(__file__).resolve().parent.parent
ARTWORK = REPO / "assets" / "artwork.png"
LINES = ("Give feedback your team can act on, then", "check what changed in the next week.")


def make_audio(workdir: Path, minutes: float, ffmpeg: str) -> Path:
    from bench.memory import make_recording

    mp3 = workdir / f"talk-{minutes:g}min.mp3"
    if not mp3.exists():
        flac = make_recording(workdir / f"talk-{minutes:g}min.flac", minutes, ffmpeg)
        subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i",
                        str(flac), "-c:a", "libmp3lame", "-b:a", "128k", "-ar", "44100",
                        "-ac", "2", str(mp3)], check=True)
        flac.unlink()
    return mp3


def child(audio: Path, dest: Path, seconds: float, result: Path) -> None:
    """Render one audiogram (called in a child process)."""
    from pipeline.captions.segmenter import Cue
    from pipeline.config import Settings
    from pipeline.media import find_ffmpeg
    from pipeline.video.audiogram import Style, render

    s = Settings()
    cues = [Cue(t, t + 3.2, LINES) for t in (i * 3.5 for i in range(int(seconds / 3.5)))]
    style = Style(width=s.audiogram.width, height=s.audiogram.height, fps=s.audiogram.fps,
                  bands=s.audiogram.bars, crf=s.encode.video_crf, preset=s.encode.video_preset,
                  aac_kbps=s.encode.aac_bitrate_kbps)
    got = render(find_ffmpeg(), audio, dest, duration_s=seconds, cues=cues,
                 title="Weekly briefing: feedback that lands", show="Learning Weekly",
                 artwork=ARTWORK, style=style)
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this Python process only
    result.write_text(json.dumps({**got.__dict__, "python_rss_mb": round(own, 1)}))


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return (c.duration or 0) / av.time_base


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.config import Settings
    from pipeline.media import find_ffmpeg

    ff = find_ffmpeg()
    s = Settings()
    workdir.mkdir(parents=True, exist_ok=True)
    still = workdir / "still.png"
    subprocess.run([ff, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(ARTWORK),
                    "-vf", f"scale={s.audiogram.width}:{s.audiogram.height}:force_original_"
                    f"aspect_ratio=decrease,pad={s.audiogram.width}:{s.audiogram.height}:"
                    "(ow-iw)/2:(oh-ih)/2", str(still)], check=True)
    minutes = [float(m) for m in os.environ.get("LEARNCAST_BENCH_AUDIOGRAM_MINUTES",
                                                "5,60").split(",")]
    rows: list[dict[str, Any]] = []
    for length in minutes:
        audio = make_audio(workdir / "inputs", length, ff)
        seconds = _duration(audio)
        out = workdir / f"audiogram-{length:g}min.mp4"
        result = workdir / f"audiogram-{length:g}min.json"
        ours = run_measured([sys.executable, "-m", "bench.audiogram", "child", str(audio),
                             str(out), str(seconds), str(result)], cwd=REPO)
        floor_out = workdir / f"floor-{length:g}min.mp4"
        fps = f"{s.audiogram.fps:g}"
        # The still is decoded once and repeated by the loop filter: what remains is encoding
        # an unchanging 720p picture and the AAC track, the least any audiogram costs.
        floor = run_measured([ff, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i",
                              str(still), "-i", str(audio), "-filter_complex",
                              f"[0:v]loop=loop=-1:size=1:start=0,setpts=N/{fps}/TB[v]",
                              "-map", "[v]", "-map", "1:a", "-t", f"{seconds:.3f}", "-r", fps,
                              "-c:v", "libx264", "-preset", s.encode.video_preset, "-crf",
                              str(s.encode.video_crf), "-pix_fmt", "yuv420p", "-c:a", "aac",
                              "-b:a", f"{s.encode.aac_bitrate_kbps}k", "-ar", "48000",
                              str(floor_out)])
        info = json.loads(result.read_text()) if result.exists() else {}
        for tool, m, path in (("learncast-audiogram", ours, out),
                              ("ffmpeg-still-floor", floor, floor_out)):
            rows.append({"suite": "audiogram", "case": f"{length:g} min speech, "
                         f"{s.audiogram.width}x{s.audiogram.height} {s.audiogram.fps:g} fps",
                         "tool": tool, **m.to_dict(),
                         "x_duration": round(m.wall_s / seconds, 3),
                         "cpu_x_duration": round(m.cpu_s / seconds, 3),
                         "x_floor": round(m.wall_s / floor.wall_s, 2),
                         "output_s": round(_duration(path), 2) if path.exists() else None,
                         "output_mb": round(path.stat().st_size / 2**20, 1)
                         if path.exists() else None,
                         **({"frames": info.get("frames"), "caption_px": info.get("caption_px"),
                             "python_rss_mb": info.get("python_rss_mb")}
                            if tool.startswith("learncast") else {})})
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]))
    else:
        print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-work")),
                         indent=2))
