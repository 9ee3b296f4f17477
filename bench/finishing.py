"""Finishing benchmark: trim + normalise + encode vs ffmpeg-normalize vs a plain decode.

Inputs are generated (no test data needed): a 30-minute speech-like stereo recording (band-
limited pink noise with syllable-rate modulation, pauses and silent head/tail) and a 7-minute
720p H.264/AAC video with the same kind of sound. Each tool runs in its own child process so
wall time, CPU time and peak RSS are the kernel's figures for that work alone:

- `learncast`: prepare → trim → normalise → encode (MP3, and MP4 for the video), verification
  passes included;
- `ffmpeg-normalize`: the same file to the same target (-16 LUFS, -1 dBTP), two-pass (its
  default), MP3 128k 44.1 kHz (audio) / AAC with video copied (video);
- `decode-floor`: `ffmpeg -i IN -f null -` — decoding alone, the least any tool must spend.

Achieved loudness of each output is measured afterwards with ebur128. `LEARNCAST_BENCH_SCALE`
(default 1.0) shortens both inputs, for a quick check that the suite runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.measure import run_measured

REPO = Path(__file__).resolve().parent.parent
TARGET_I, TARGET_TP = -16.0, -1.0


def _ffmpeg() -> str:
    from pipeline.media import find_ffmpeg

    return find_ffmpeg()


def _speech_filter(seconds: float) -> str:
    """Speech-like sound: pink noise in the voice band, 4 Hz syllables, regular pauses."""
    gate = (f"(0.55+0.45*sin(2*PI*4*t))*gt(sin(2*PI*t/9),-0.6)"
            f"*gte(t,3)*lte(t,{seconds - 4:.1f})")
    return (f"anoisesrc=color=pink:sample_rate=44100:amplitude=0.5:duration={seconds}:seed=1,"
            "highpass=f=120,lowpass=f=5000,"
            f"volume='0.02+{gate}':eval=frame,aformat=channel_layouts=stereo")


def make_inputs(workdir: Path, scale: float) -> dict[str, Path]:
    ff = _ffmpeg()
    workdir.mkdir(parents=True, exist_ok=True)
    audio_s, video_s = round(1800 * scale, 1), round(420 * scale, 1)
    audio = workdir / "talk-30min.flac"
    video = workdir / "talk-7min-720p.mp4"
    if not audio.exists():
        subprocess.run([ff, "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i",
                        _speech_filter(audio_s), "-c:a", "flac", str(audio)], check=True)
    if not video.exists():
        subprocess.run([ff, "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1280x720:rate=30:duration={video_s}", "-f", "lavfi",
                        "-i", _speech_filter(video_s), "-c:v", "libx264", "-preset",
                        "veryfast", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        "-b:a", "160k", "-shortest", str(video)], check=True)
    return {"audio-30min": audio, "video-7min-720p": video}


def child(workspace: Path, media: Path, result: Path) -> None:
    """Run the finishing stages on `media` in a fresh workspace (called in a child process)."""
    from pipeline.fsutil import sha256_file
    from pipeline.media import probe
    from pipeline.models import Job
    from pipeline.runner import call_stage
    from pipeline.sidecar import EpisodeMetadata
    from pipeline.stages import encode, normalise, prepare, trim
    from pipeline.state import StateDB
    from pipeline.workspace import Context, init_workspace, open_workspace

    init_workspace(workspace)
    ws = open_workspace(workspace)
    ws.ensure()
    ctx = Context(workspace=ws, ffmpeg=_ffmpeg(), state=StateDB(ws.state_db))
    job = Job(id="bench", sha256=sha256_file(media), show=ws.settings.show(None).id,
              title="Bench", slug="bench", source=media.name, original=str(media),
              probe=probe(media), metadata=EpisodeMetadata(title="Bench"),
              files={"original": str(media)})
    ws.job_dir(job.id).mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    for name, stage in (("prepare", prepare), ("trim", trim), ("normalise", normalise),
                        ("encode", encode)):
        start = time.perf_counter()
        job = call_stage(stage, job, ctx)
        stages[name] = round(time.perf_counter() - start, 2)
    result.write_text(json.dumps({"stages": stages, "files": {
        k.value: str(ws.abs(v)) for k, v in job.files.items()},
        "trim": job.results.trim.model_dump() if job.results.trim else {},
        "kept": job.timeline.kept,
        "limited": bool(job.results.loudness and job.results.loudness.limited)}))


def _achieved(path: Path) -> dict[str, float]:
    from pipeline.audio.loudness import measure

    got = measure(_ffmpeg(), path)
    return {"lufs": round(got.integrated, 1), "tp_dbtp": round(got.true_peak, 1)}


def run(workdir: Path) -> list[dict[str, Any]]:
    scale = float(os.environ.get("LEARNCAST_BENCH_SCALE", "1.0"))
    ff = _ffmpeg()
    env = {**os.environ, "FFMPEG_PATH": ff}
    rows: list[dict[str, Any]] = []
    for case, media in make_inputs(workdir / "inputs", scale).items():
        is_video = case.startswith("video")
        out_dir = workdir / case
        out_dir.mkdir(parents=True, exist_ok=True)
        measured: dict[str, Any] = {}

        floor = run_measured([ff, "-hide_banner", "-nostdin", "-v", "error", "-i", str(media),
                              "-f", "null", "-"])
        measured["decode-floor"] = (floor, None, {})

        result = out_dir / "learncast.json"
        ours = run_measured([sys.executable, "-m", "bench.finishing", "child",
                             str(out_dir / "ws"), str(media), str(result)], cwd=REPO)
        info = json.loads(result.read_text()) if result.exists() else {"files": {}}
        deliverable = info["files"].get("encoded_video" if is_video else "encoded_audio")
        extra = {"stages_s": info.get("stages"), "limited": info.get("limited"),
                 "trim_video_path": (info.get("trim") or {}).get("video_path")}
        measured["learncast"] = (ours, deliverable, extra)

        fn_out = out_dir / ("ffmpeg-normalize.mp4" if is_video else "ffmpeg-normalize.mp3")
        codec = (["-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-c:v", "copy"] if is_video
                 else ["-c:a", "libmp3lame", "-b:a", "128k", "-ar", "44100"])
        fn = run_measured([str(Path(sys.executable).with_name("ffmpeg-normalize")), str(media),
                           "-t", str(TARGET_I), "-tp", str(TARGET_TP), *codec, "-f", "-q",
                           "-o", str(fn_out)], env=env)
        measured["ffmpeg-normalize"] = (fn, str(fn_out), {})

        for tool, (m, out, extra) in measured.items():
            row: dict[str, Any] = {"suite": "finishing", "case": case, "tool": tool,
                                   **m.to_dict(),
                                   "x_decode_floor": round(m.wall_s / floor.wall_s, 2),
                                   "x_ffmpeg_normalize": round(m.wall_s / fn.wall_s, 2)}
            if out and Path(out).exists():
                row.update(_achieved(Path(out)))
            row.update({k: v for k, v in extra.items() if v is not None})
            rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-work")),
                         indent=2))
