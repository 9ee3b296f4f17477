"""Peak memory of `learncast run` on a one-hour recording (the 1.5 GB promise, tiny.en).

The hour is real speech made from the shared clips: every English clip with a reference
transcript, resampled to 44.1 kHz stereo and joined with short pauses, in a new shuffled order
each round until the hour is full. A single short clip looped would put the same sentence
several times into each of whisper's 30 s windows, which whisper rightly reads as a loop and
re-decodes at higher temperatures: that measures the fallback, not an hour of talk. The whole
CLI runs as a child process, started through the lean launcher (bench.measure), and the
kernel's `wait4` reports its peak RSS. `LEARNCAST_BENCH_MEMORY_MINUTES` shortens the recording
for a quick look, and `LEARNCAST_BENCH_MEMORY_ENGINES` picks engines (comma-separated).
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
    """`minutes` of varied real speech as one 44.1 kHz stereo FLAC (see the module docstring),
    with what is said in it beside it (`dest` with suffix .txt)."""
    import json
    import random
    import tempfile

    from pipeline.media import find_ffmpeg

    ff = ffmpeg or find_ffmpeg()
    refs = json.loads((SHARED_AUDIO / "references.json").read_text())
    names = sorted(n for n, r in refs.items()
                   if r.get("reference") not in (None, "None") and "multilingual" not in n)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        clips = []
        for i, name in enumerate(names):
            clip = Path(tmp) / f"{i:02d}.wav"
            subprocess.run([ff, "-hide_banner", "-nostdin", "-v", "error", "-i",
                            str(SHARED_AUDIO / name), "-af", "apad=pad_dur=0.7", "-ar", "44100",
                            "-ac", "2", "-c:a", "pcm_s16le", str(clip)], check=True)
            clips.append((clip, (clip.stat().st_size - 44) / (44100 * 4)))
        rng, total, order = random.Random(8), 0.0, []
        while total < minutes * 60:
            round_ = clips[:]
            rng.shuffle(round_)
            order += round_
            total += sum(seconds for _, seconds in round_)
        said, elapsed = [], 0.0
        for clip, seconds in order:
            if elapsed < minutes * 60 - 1:  # a clip cut by the end counts: its words are there
                said.append(refs[names[int(clip.stem)]]["reference"])
            elapsed += seconds
        dest.with_suffix(".txt").write_text(" ".join(said) + "\n")
        playlist = Path(tmp) / "playlist.txt"
        playlist.write_text("".join(f"file '{clip}'\n" for clip, _ in order))
        subprocess.run([ff, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "concat",
                        "-safe", "0", "-i", str(playlist), "-t", f"{minutes * 60:.0f}",
                        "-c:a", "flac", str(dest)], check=True)
    return dest


def measure_run(workspace: Path, engine: str, env: dict[str, str] | None = None,
                timeout_s: float | None = None) -> dict[str, Any]:
    """Run `learncast run` on `workspace` in a child; wall/CPU/peak RSS from wait4."""
    full_env = {**os.environ, **(env or {}), "LEARNCAST_TRANSCRIBE__ENGINE": engine,
                "LEARNCAST_INGEST__SETTLE_SECONDS": "0.2"}
    m = run_measured([sys.executable, "-m", "pipeline", "--workspace", str(workspace), "run"],
                     cwd=REPO, env=full_env, timeout_s=timeout_s)
    return m.to_dict()


def transcript_figures(workspace: Path, reference: str) -> dict[str, Any]:
    """Words, ASR windows and WER against what was said: the hour was really transcribed."""
    import json

    from tests.asr.fixtures import wer

    found = sorted(workspace.glob("work/*/transcript.json"))
    if not found:
        return {}
    data = json.loads(found[0].read_text())
    return {"words": len(data["words"]), "asr_windows": data.get("windows"),
            "wer": round(wer(reference, data["text"]), 4)}


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
                     "within_limit": m["peak_rss_mb"] <= LIMIT_MB and m["returncode"] == 0,
                     **transcript_figures(ws, source.with_suffix(".txt").read_text())})
    return rows
