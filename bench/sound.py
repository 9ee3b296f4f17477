"""Sound benchmark: the speech leveler and noise reduction against the tools people use.

Inputs are built from the shared speech recordings with ffmpeg (`bench/sound_inputs.py` says
exactly how; nothing is copied into the repository), all 44.1 kHz mono:

- `alternating`: JFK (-20 LUFS) and an LJSpeech voice (-30 LUFS) taking turns, twice, over
  -60 dBFS pink room tone (44 s). Measure: `spread_lu`, the largest difference between the
  sections' 3 s short-term loudness (the power mean of ebur128's S over each section, from
  3 s into it, so every window lies inside the section). Before: 9.9 LU. Goal: ≤ 1.5 LU.
- `interview-10min`: the same recording looped to 10 minutes, for timing (`-stream_loop`).
- `pauses-25s`: JFK, 25 s of -60 dBFS room tone alone, JFK (51 s). Measure: `noise_rise_db`,
  how much the room tone in the pause (power mean of the momentary loudness, 0.5 s in from
  each edge) rose relative to the integrated loudness. Goal: ≤ 3 dB.
- `fan-pink`, `fan-brown`, `hum-50`: the 104 s `longform_concat_16k.flac` (every word has a
  reference) at -20 LUFS over pink or brown noise at -35 dBFS, or 50 Hz hum with harmonics at
  -35 dBFS, with 3 s of noise alone before and after. Measure: `floor_down_db`, how much the
  noise alone fell relative to the integrated loudness; `wer` on the reference. Goal: ≥ 10 dB
  with noise reduction on, and a WER no worse than without it.

Tools, each a fresh child process timed by the kernel (`bench.measure`):
`ffmpeg-normalize` (EBU R128 two-pass, kept linear with `--keep-loudness-range-target`, same
target and ceiling as ours: -19 LUFS / -2 dBTP, FLAC out), `dynaudnorm` (ffmpeg's, defaults,
FLAC out), `learncast linear` (our normalise stage with leveler, hum removal and noise
reduction off: the path of before), `learncast` (defaults: leveler on, hum `auto`, noise
reduction off), and on the noisy inputs `learncast no-nr` (leveler only: hum removal off
too, "without noise reduction") and `learncast light-nr` / `strong-nr` (noise reduction on,
hum `auto`). WER is measured on each output by faster-whisper tiny.en (the bundled model, beam 5,
the transcribe stage's guards), loaded once and not timed. Times on the 10-minute interview
are the best of `LEARNCAST_BENCH_REPEATS` (2) interleaved runs; `x_linear` divides by
ffmpeg-normalize's, `x_our_linear` by our own linear path's (goal: ≤ 1.5).

Run: `python -m bench.run sound` (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import Measured, run_measured
from bench.sound_inputs import Built, alternating_voices, long_pauses, noisy_speech

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
REPEATS = int(os.environ.get("LEARNCAST_BENCH_REPEATS", "2"))
TARGET_I, CEILING = -19.0, -2.0  # apple-podcast-mono, 1 dB headroom: what ours aims at
MODES = {
    "learncast linear": {"leveler": False, "hum": "off", "noise_reduction": "off"},
    "learncast": {"leveler": True, "hum": "auto", "noise_reduction": "off"},
    "learncast no-nr": {"leveler": True, "hum": "off", "noise_reduction": "off"},
    "learncast light-nr": {"leveler": True, "hum": "auto", "noise_reduction": "light"},
    "learncast strong-nr": {"leveler": True, "hum": "auto", "noise_reduction": "strong"},
}

# --- independent measurement (ebur128's frame log, read here, not by pipeline code) -------

_FRAME = re.compile(r"t:\s*([\d.]+)\s+TARGET.*?M:\s*(-?[\d.]+|-inf|nan)\s+"
                    r"S:\s*(-?[\d.]+|-inf|nan)")


def frames(ffmpeg: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(t, momentary, short-term, integrated, true peak) of `path`."""
    err = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
                          "-af", "ebur128=framelog=info:peak=true", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    rows = np.array([[float(x) for x in m] for m in _FRAME.findall(err)])
    summary = err.rsplit("Summary:", 1)[1]
    i = float(re.findall(r"I:\s+(-?[\d.]+) LUFS", summary)[0])
    tp = float(re.findall(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)[0])
    return rows[:, 0], rows[:, 1], rows[:, 2], i, tp


def power_mean(values: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(10 ** (np.asarray(values) / 10))))


def section_spread(ffmpeg: str, path: Path, built: Built) -> float:
    """Largest difference between the sections' short-term loudness (LU)."""
    t, _, s, _, _ = frames(ffmpeg, path)
    levels = [power_mean(s[(t >= a + 3.0) & (t <= b)]) for a, b, _ in built.sections
              if b - a > 3.5]
    return max(levels) - min(levels)


def noise_relative(ffmpeg: str, path: Path, regions: list[tuple[float, float]]) -> float:
    """Level of the noise-only `regions` relative to the integrated loudness (dB)."""
    t, m, _, i, _ = frames(ffmpeg, path)
    sel = np.zeros(len(t), bool)
    for a, b in regions:
        sel |= (t - 0.4 >= a + 0.3) & (t <= b - 0.3)
    return power_mean(m[sel]) - i


# --- tools ---------------------------------------------------------------------------------


def child(mode: str, source: Path, dest: Path) -> None:
    """Our normalise path on one file (called in a child process, so it is timed alone)."""
    from pipeline.audio.loudness import PROFILES
    from pipeline.audio.master import SoundOptions, make_master
    from pipeline.media import find_ffmpeg

    options = SoundOptions(max_gain_db=12.0, **MODES[mode])  # type: ignore[arg-type]
    figures, report = make_master(find_ffmpeg(), source, dest, PROFILES["apple-podcast-mono"],
                                  rate=44100, headroom_db=1.0, options=options)
    dest.with_suffix(".json").write_text(json.dumps({"loudness": figures.model_dump(mode="json"),
                                                     "sound": report}))


def _commands(ffmpeg: str, source: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    fn = Path(sys.executable).with_name("ffmpeg-normalize")
    cmds = {
        "ffmpeg-normalize": ([str(fn), str(source), "-t", str(TARGET_I), "-tp", str(CEILING),
                              "--keep-loudness-range-target", "-c:a", "flac", "-ar", "44100",
                              "-f", "-q", "-o", str(out / "ffmpeg-normalize.flac")],
                             out / "ffmpeg-normalize.flac"),
        "dynaudnorm": ([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i",
                        str(source), "-af", "dynaudnorm", "-c:a", "flac",
                        str(out / "dynaudnorm.flac")], out / "dynaudnorm.flac"),
    }
    for mode in MODES:
        dest = out / f"{mode.replace(' ', '-')}.flac"
        cmds[mode] = ([sys.executable, "-m", "bench.sound", "child", mode, str(source),
                       str(dest)], dest)
    return cmds


class Recogniser:
    """faster-whisper tiny.en, loaded once, run as the transcribe stage runs it."""

    def __init__(self, models: Path) -> None:
        from pipeline.asr.engines import load_engine

        self.engine = load_engine("faster-whisper", "tiny.en", models)

    def wer(self, ffmpeg: str, path: Path, reference: str) -> float:
        from pipeline.asr.audio import decode_16k_mono
        from pipeline.asr.engines import AsrOptions
        from pipeline.asr.guards import GuardSettings, drop_hallucinations
        from tests.asr.fixtures import wer

        transcript, _ = drop_hallucinations(
            self.engine.transcribe(decode_16k_mono(ffmpeg, path), AsrOptions(beam_size=5)),
            GuardSettings())
        return wer(reference, " ".join(s.text for s in transcript.segments))


def _loop(ffmpeg: str, built: Built, minutes: float, dest: Path) -> Built:
    loops = int(minutes * 60 // built.duration_s)
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop",
                    str(loops), "-i", str(built.path), "-c:a", "flac", "-sample_fmt", "s32",
                    str(dest)], check=True)
    sections = [(a + k * built.duration_s, b + k * built.duration_s, label)
                for k in range(loops + 1) for a, b, label in built.sections]
    return Built(dest, sections, [], built.duration_s * (loops + 1))


def _references(audio: Path) -> dict[str, str]:
    refs = json.loads((audio / "references.json").read_text())
    return {"jfk": refs["jfk.flac"]["reference"],
            "lj": refs["speechbrain/LJ050-0131.wav"]["reference"]}


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.media import find_ffmpeg

    ffmpeg = find_ffmpeg()
    inputs_dir = workdir / "inputs"
    refs = _references(SHARED_AUDIO)
    alternating = alternating_voices(ffmpeg, SHARED_AUDIO, inputs_dir)
    cases: dict[str, tuple[Built, str, str]] = {
        "alternating": (alternating, "spread",
                        " ".join([refs["jfk"], refs["lj"]] * 2)),
        "pauses-25s": (long_pauses(ffmpeg, SHARED_AUDIO, inputs_dir), "pause",
                       " ".join([refs["jfk"]] * 2)),
        "fan-pink": (noisy_speech(ffmpeg, SHARED_AUDIO, inputs_dir, "pink"), "floor", ""),
        "fan-brown": (noisy_speech(ffmpeg, SHARED_AUDIO, inputs_dir, "brown"), "floor", ""),
        "hum-50": (noisy_speech(ffmpeg, SHARED_AUDIO, inputs_dir, "hum50"), "floor", ""),
        "interview-10min": (_loop(ffmpeg, alternating, 10, inputs_dir / "interview.flac"),
                            "spread", ""),
    }
    recogniser = Recogniser(workdir / "models")
    rows: list[dict[str, Any]] = []
    for case, (built, metric, reference) in cases.items():
        reference = reference or built.reference
        out = workdir / case
        out.mkdir(parents=True, exist_ok=True)
        commands = _commands(ffmpeg, built.path, out)
        if metric != "floor":
            commands = {k: v for k, v in commands.items() if "nr" not in k}
        repeats = REPEATS if case == "interview-10min" else 1
        best: dict[str, Measured] = {}
        for _ in range(repeats):
            for tool, (cmd, _) in commands.items():
                measured = run_measured(cmd, cwd=REPO)
                if measured.returncode != 0:
                    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                                          check=False)
                    raise SystemExit(f"{tool} failed on {case}: {proc.stderr[-1500:]}")
                if tool not in best or measured.wall_s < best[tool].wall_s:
                    best[tool] = measured
        outputs = {"input": built.path, **{tool: path for tool, (_, path) in commands.items()}}
        for tool, path in outputs.items():
            row: dict[str, Any] = {"suite": "sound", "case": case, "tool": tool,
                                   "audio_s": round(built.duration_s, 1)}
            if tool in best:
                row.update(best[tool].to_dict(), runs=repeats,
                           x_linear=round(best[tool].wall_s / best["ffmpeg-normalize"].wall_s,
                                          2),
                           x_our_linear=round(best[tool].wall_s
                                              / best["learncast linear"].wall_s, 2))
            _, _, _, integrated, peak = frames(ffmpeg, path)
            row.update(lufs=round(integrated, 1), tp_dbtp=round(peak, 1))
            if metric == "spread":
                row["spread_lu"] = round(section_spread(ffmpeg, path, built), 2)
            elif metric == "pause":
                pause = [built.noise_only[1]]
                row["noise_rise_db"] = round(noise_relative(ffmpeg, path, pause)
                                             - noise_relative(ffmpeg, built.path, pause), 2)
            else:
                row["floor_down_db"] = round(noise_relative(ffmpeg, built.path, built.noise_only)
                                             - noise_relative(ffmpeg, path, built.noise_only),
                                             1)
            if reference:
                row["wer"] = round(recogniser.wer(ffmpeg, path, reference), 4)
            report = path.with_suffix(".json")
            if tool.startswith("learncast") and report.exists():
                sound = json.loads(report.read_text())["sound"]
                row["report_spread_lu"] = sound["section_spread_lu"]["after"]
                row["report_gain_db"] = sound["leveler"]["gain_range_db"]
                row["limiter_acted"] = sound["limiter"]["acted"]
            rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-work")),
                         indent=2))
