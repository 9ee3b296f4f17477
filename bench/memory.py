"""Peak memory of `learncast run` on a one-hour recording (the 1.5 GB promise, tiny.en).

The hour is real speech made cheaply: the shared 11 s JFK clip looped with ffmpeg
`-stream_loop` into one FLAC. The whole CLI runs as a child process; the kernel's `wait4`
reports its peak RSS (the largest process: Python with the ASR model; ffmpeg children are far
smaller). `LEARNCAST_BENCH_MEMORY_MINUTES` shortens the recording for a quick look, and
`LEARNCAST_BENCH_MEMORY_ENGINES` picks engines (comma-separated).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.measure import run_measured

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
#: The issue's bound for a 60-minute recording with tiny.en.
LIMIT_MB = 1536.0


def make_recording(dest: Path, minutes: float, ffmpeg: str | None = None) -> Path:
    """`minutes` of speech: jfk.flac looped, as one FLAC."""
    from pipeline.media import find_ffmpeg

    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg or find_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-stream_loop", "-1", "-i", str(SHARED_AUDIO / "jfk.flac"),
                    "-t", f"{minutes * 60:.0f}", "-c:a", "flac", str(dest)], check=True)
    return dest


def measure_run(workspace: Path, engine: str, env: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """Run `learncast run` on `workspace` in a child; wall/CPU/peak RSS from wait4."""
    full_env = {**os.environ, "LEARNCAST_TRANSCRIBE__ENGINE": engine,
                "LEARNCAST_INGEST__SETTLE_SECONDS": "0.2", **(env or {})}
    m = run_measured([sys.executable, "-m", "pipeline", "--workspace", str(workspace), "run"],
                     cwd=REPO, env=full_env)
    return m.to_dict()


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.workspace import init_workspace

    minutes = float(os.environ.get("LEARNCAST_BENCH_MEMORY_MINUTES", "60"))
    engines = os.environ.get("LEARNCAST_BENCH_MEMORY_ENGINES",
                             "openai-whisper,faster-whisper").split(",")
    source = make_recording(workdir / "hour.flac", minutes)
    rows = []
    for engine in engines:
        ws = workdir / f"ws-{engine}"
        init_workspace(ws)
        os.link(source, ws / "inbox" / "hour.flac")
        m = measure_run(ws, engine)
        rows.append({"suite": "memory", "case": f"{minutes:g} min speech, tiny.en",
                     "tool": engine, **m, "limit_mb": LIMIT_MB,
                     "within_limit": m["peak_rss_mb"] <= LIMIT_MB and m["returncode"] == 0})
    return rows
