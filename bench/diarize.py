"""Speaker diarization benchmark: DER and speaker-change errors on conversations with known
turns, plus what it costs (it runs on every episode).

The conversations are built here from the shared clips (../shared/audio), so the truth is
known to the millisecond:

* each source clip is decoded to 16 kHz mono, its leading and trailing silence cut (energy
  less than 12 dB over its noise floor), long clips split at their own pauses into sentences,
  and its speech level set to -23 dBFS (so loudness tells nothing about who speaks);
* turns alternate between the voices in a fixed, seeded order, joined by pauses of
  0.25-0.8 s (`pauses`) or by none at all (`abutting`: every change has to be heard in the
  voice, there is no pause to find);
* voices: `spk1` (speechbrain spk1_snt1-6), `spk2` (spk2_snt1-6), `osr` (the Harvard
  sentences of OSR_us_000_0034_8k, telephone band), `jfk` (jfk.flac) and `lj`
  (LJ050-0131). spk1 and spk2 come from the same corpus and microphone: the hard pair.

DER is frame-based (10 ms) under the best one-to-one speaker mapping: (missed speech + false
alarm + confusion) / reference speech, with no collar and with the standard 0.25 s collar
around every reference boundary. A change point is where the speaker differs from the previous
turn's; its error is the distance from the hypothesis change to the reference pause (0 inside
it). Goal: DER ≤ 15 %, every change within 1 s. Single-voice files must come out as one
speaker. Cost: seconds of CPU per minute of audio and the process's peak RSS, in a fresh
child process that loads the encoder like a worker does (measured by the kernel through
bench/measure.py's launcher), beside faster-whisper tiny.en on the same file for scale.
Run: `python -m bench.run diarize`.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import run_measured

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
RATE = 16_000
FRAME = 0.01
COLLAR_S = 0.25
LEVEL_DBFS = -23.0

VOICES: dict[str, list[str]] = {
    "spk1": [f"speechbrain/spk1_snt{k}.wav" for k in range(1, 7)],
    "spk2": [f"speechbrain/spk2_snt{k}.wav" for k in range(1, 7)],
    "osr": ["OSR_us_000_0034_8k.wav"],
    "jfk": ["jfk.flac"],
    "lj": ["speechbrain/LJ050-0131.wav"],
}
SINGLE_VOICE = ("jfk.flac", "OSR_us_000_0034_8k.wav", "speechbrain/LJ050-0131.wav",
                "speechbrain/example1.wav", "fw_hotwords.mp3")


@dataclass(frozen=True)
class RefTurn:
    start: float
    end: float
    speaker: str


def _decode(ffmpeg: str, path: Path) -> np.ndarray:
    from pipeline.asr.audio import decode_16k_mono

    return decode_16k_mono(ffmpeg, path)


def _sentences(samples: np.ndarray, min_pause_s: float = 0.35) -> list[np.ndarray]:
    """The clip without its edge silence, split at internal pauses of `min_pause_s`."""
    hop = RATE // 20  # 50 ms
    frames = len(samples) // hop
    power = 10 * np.log10(np.array([float(np.mean(samples[k * hop:(k + 1) * hop] ** 2))
                                    + 1e-12 for k in range(frames)]))
    # Speech: 12 dB over the clip's noise floor (its quietest tenth), and within 40 dB of its
    # loudest moment: the telephone clip has a hiss that a fixed level would call speech.
    loud = power > max(np.percentile(power, 10) + 12, power.max() - 40)
    pieces, start, quiet = [], None, 0
    for k, on in enumerate(loud):
        if on:
            if start is None:
                start = k
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 0.05 >= min_pause_s:
                pieces.append((start, k - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        end = frames - quiet
        pieces.append((start, end))
    return [samples[a * hop:b * hop] for a, b in pieces if (b - a) * 0.05 >= 0.5]


def _level(samples: np.ndarray, dbfs: float = LEVEL_DBFS) -> np.ndarray:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1e-9
    return (samples * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def voice_pieces(ffmpeg: str, voice: str) -> list[np.ndarray]:
    out = []
    for name in VOICES[voice]:
        out += [_level(p) for p in _sentences(_decode(ffmpeg, SHARED_AUDIO / name))]
    return out


def build_conversation(ffmpeg: str, voices: list[str], dest: Path, *, seed: int,
                       pauses: bool = True, rounds: int = 1, turns: int | None = None,
                       ) -> tuple[Path, list[RefTurn]]:
    """A WAV of alternating turns by `voices` (each turn 1-2 of a voice's sentences, every
    sentence used `rounds` times) and its reference turns, written as 16 kHz PCM.

    The shared clips hold only 12-36 s per voice, so a conversation of a minute or more says
    each sentence more than once; a repeat starts 0-0.2 s later into the sentence and is
    0-3 dB quieter, so no two chunks the diarizer embeds are the same samples."""
    rng = random.Random(seed)
    pools: dict[str, list[np.ndarray]] = {}
    for voice in voices:
        pieces = voice_pieces(ffmpeg, voice)
        pools[voice] = list(pieces)
        for _ in range(rounds - 1):
            pools[voice] += [p[round(rng.uniform(0, 0.2) * RATE):]
                             * np.float32(10 ** (-rng.uniform(0, 3) / 20)) for p in pieces]
        rng.shuffle(pools[voice])
    audio: list[np.ndarray] = []
    ref: list[RefTurn] = []
    t = 0.3
    audio.append(np.zeros(round(t * RATE), np.float32))
    previous = None
    while any(pools.values()) and (turns is None or len(ref) < turns):
        choices = [v for v in voices if pools[v] and v != previous] or \
            [v for v in voices if pools[v]]
        voice = rng.choice(choices)
        take = min(len(pools[voice]), rng.choice((1, 1, 2)))
        speech = np.concatenate([np.concatenate([pools[voice].pop(), np.zeros(
            round(0.15 * RATE), np.float32)]) for _ in range(take)])[:-round(0.15 * RATE)]
        audio.append(speech)
        ref.append(RefTurn(t, t + len(speech) / RATE, voice))
        t += len(speech) / RATE
        gap = rng.uniform(0.25, 0.8) if pauses else 0.0
        audio.append(np.zeros(round(gap * RATE), np.float32))
        t += round(gap * RATE) / RATE
        previous = voice
    audio.append(np.zeros(round(0.5 * RATE), np.float32))
    samples = np.concatenate(audio)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "f32le", "-ar", str(RATE), "-ac", "1",
                    "-i", "-", "-c:a", "pcm_s16le", str(dest)], input=samples.tobytes(),
                   check=True)
    return dest, ref


# --- scoring ------------------------------------------------------------------------------


def _frames(turns: list[tuple[float, float, str]], n: int) -> list[set[str]]:
    out: list[set[str]] = [set() for _ in range(n)]
    for start, end, who in turns:
        for k in range(max(0, round(start / FRAME)), min(n, round(end / FRAME))):
            out[k].add(who)
    return out


def der(ref: list[RefTurn], hyp: list[tuple[float, float, str]], duration: float,
        collar: float = 0.0) -> dict[str, float]:
    """Diarization error rate (and its parts) under the best one-to-one speaker mapping."""
    n = round(duration / FRAME) + 1
    r = _frames([(t.start, t.end, t.speaker) for t in ref], n)
    h = _frames(hyp, n)
    scored = np.ones(n, bool)
    if collar:
        for t in ref:
            for edge in (t.start, t.end):
                scored[max(0, round((edge - collar) / FRAME)):round((edge + collar) / FRAME)] \
                    = False
    ref_ids = sorted({t.speaker for t in ref})
    hyp_ids = sorted({s for _, _, s in hyp})
    best: dict[str, float] | None = None
    pad = hyp_ids + [None] * max(0, len(ref_ids) - len(hyp_ids))
    for perm in itertools.permutations(pad, len(ref_ids)):
        mapping = {h_id: r_id for r_id, h_id in zip(ref_ids, perm, strict=True) if h_id}
        miss = fa = conf = total = 0
        for k in np.flatnonzero(scored):
            rs, hs = r[k], {mapping.get(s, f"?{s}") for s in h[k]}
            total += len(rs)
            miss += max(0, len(rs) - len(hs))
            fa += max(0, len(hs) - len(rs))
            conf += min(len(rs), len(hs)) - len(rs & hs)
        if best is None or miss + fa + conf < best["errors"]:
            best = {"errors": miss + fa + conf, "miss": miss, "fa": fa, "conf": conf,
                    "total": total}
    assert best is not None
    total = best["total"] or 1
    return {"der": round(best["errors"] / total, 4), "missed": round(best["miss"] / total, 4),
            "false_alarm": round(best["fa"] / total, 4),
            "confusion": round(best["conf"] / total, 4)}


def changes(turns: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """(end of the previous turn, start of the next) at every change of speaker."""
    ordered = sorted(turns)
    return [(a[1], b[0]) for a, b in itertools.pairwise(ordered) if a[2] != b[2]]


def change_errors(ref: list[RefTurn], hyp: list[tuple[float, float, str]],
                  tolerance: float = 1.0) -> dict[str, Any]:
    """How far each reference change is from the nearest hypothesis change, and the changes
    found where there is none (each measured to the reference pause, 0 inside it)."""
    ref_changes = changes([(t.start, t.end, t.speaker) for t in ref])
    hyp_points = [(a + b) / 2 for a, b in changes(hyp)]

    def distance(point: float, gap: tuple[float, float]) -> float:
        return max(gap[0] - point, point - gap[1], 0.0)

    errors = [min((distance(p, g) for p in hyp_points), default=float("inf"))
              for g in ref_changes]
    false = [p for p in hyp_points
             if min((distance(p, g) for g in ref_changes), default=float("inf")) > tolerance]
    return {"changes": len(ref_changes), "max_change_error_s": round(max(errors, default=0), 3),
            "mean_change_error_s": round(float(np.mean(errors)), 3) if errors else 0.0,
            "missed_changes": sum(e > tolerance for e in errors),
            "false_changes": len(false)}


def score(ref: list[RefTurn], hyp: list[tuple[float, float, str]], duration: float,
          ) -> dict[str, Any]:
    plain = der(ref, hyp, duration)
    collared = der(ref, hyp, duration, COLLAR_S)
    return {"der": plain["der"], "der_collar_0_25": collared["der"],
            "missed": plain["missed"], "false_alarm": plain["false_alarm"],
            "confusion": plain["confusion"], **change_errors(ref, hyp)}


# --- running -----------------------------------------------------------------------------


def diarize_file(path: Path, ffmpeg: str, resources: dict[str, Any], **settings: Any,
                 ) -> tuple[Any, float]:
    from pipeline.asr.audio import stream_16k_mono
    from pipeline.asr.diarize import Settings, diarize

    started = time.process_time()
    result = diarize(stream_16k_mono(ffmpeg, path), settings=Settings(**settings),
                     resources=resources)
    return result, time.process_time() - started


def hyp_turns(result: Any) -> list[tuple[float, float, str]]:
    return [(t.start, t.end, f"S{t.speaker}") for t in result.turns]


#: Each conversation is built with these seeds (turn order, pauses, repeats).
SEEDS = (15, 16, 17)
#: case → (voices, pauses between turns, rounds): 1.2-2 minutes each.
CONVERSATIONS = {
    "2 voices, pauses": (["spk1", "spk2"], True, 3),
    "2 voices, abutting": (["spk1", "spk2"], False, 3),
    "3 voices, pauses": (["spk1", "spk2", "osr"], True, 2),
    "3 voices, abutting": (["spk1", "spk2", "osr"], False, 2),
}


def _cost_child(mode: str, path: str) -> None:
    """One fresh process diarizing (or, for scale, transcribing) one file, as a worker would:
    model load included. Prints CPU seconds, wall seconds and peak RSS as JSON."""
    import resource

    from pipeline.media import find_ffmpeg

    started = time.process_time()
    wall = time.perf_counter()
    if mode == "diarize":
        result, _ = diarize_file(Path(path), find_ffmpeg(), {})
        duration = result.duration_s
    else:  # the cheaper engine, so the ratio errs on the side of diarization looking dear
        from pipeline.asr.audio import decode_16k_mono
        from pipeline.asr.engines import AsrOptions, load_engine

        audio = decode_16k_mono(find_ffmpeg(), Path(path))
        engine = load_engine("faster-whisper", "tiny.en", Path(path).parent / "models")
        engine.transcribe(audio, AsrOptions(beam_size=5))
        duration = len(audio) / RATE
    print(json.dumps({"cpu_s": time.process_time() - started,
                      "wall_s": time.perf_counter() - wall, "duration_s": duration,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.media import find_ffmpeg

    ffmpeg = find_ffmpeg()
    workdir.mkdir(parents=True, exist_ok=True)
    resources: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for case, (voices, pauses, rounds) in CONVERSATIONS.items():
        for seed in SEEDS:
            path, ref = build_conversation(ffmpeg, voices, workdir / f"{case} {seed}.wav",
                                           seed=seed, pauses=pauses, rounds=rounds)
            duration = ref[-1].end + 0.5
            for given in (None, len(voices)):
                result, cpu = diarize_file(path, ffmpeg, resources, speakers=given)
                rows.append({"suite": "diarize", "case": f"{case}, seed {seed}",
                             "tool": "learncast", "count": "given" if given else "estimated",
                             "duration_s": round(duration, 1), "voices": len(voices),
                             "speakers_found": result.speakers,
                             **score(ref, hyp_turns(result), duration),
                             "cpu_s_per_min": round(cpu / duration * 60, 2)})
    for name in SINGLE_VOICE:
        result, cpu = diarize_file(SHARED_AUDIO / name, ffmpeg, resources)
        rows.append({"suite": "diarize", "case": f"single voice: {name}", "tool": "learncast",
                     "count": "estimated", "duration_s": round(result.duration_s, 1),
                     "voices": 1, "speakers_found": result.speakers,
                     "cpu_s_per_min": round(cpu / max(result.duration_s, 1e-9) * 60, 2)})
    # Cost as a worker pays it: a fresh process, 2-minute conversation + encoder load.
    path, ref = build_conversation(ffmpeg, ["spk1", "spk2", "osr"], workdir / "cost.wav",
                                   seed=16)
    duration = ref[-1].end + 0.5
    costs = {mode: run_measured([sys.executable, "-m", "bench.diarize", mode, str(path)],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
             for mode in ("diarize", "asr")}
    for mode, cost in costs.items():
        if cost.returncode != 0:
            raise RuntimeError(f"the {mode} cost run failed (exit {cost.returncode}); run "
                               f"`python -m bench.diarize {mode} {path}` to see why")
        rows.append({"suite": "diarize", "case": "cost, fresh process",
                     "tool": "learncast diarize" if mode == "diarize"
                     else "faster-whisper tiny.en (for scale)",
                     "duration_s": round(duration, 1),
                     "cpu_s_per_min": round(cost.cpu_s / duration * 60, 2),
                     "wall_s": round(cost.wall_s, 2), "peak_rss_mb": round(cost.peak_rss_mb),
                     "cpu_vs_asr": round(cost.cpu_s / costs["asr"].cpu_s, 3)})
    return rows


if __name__ == "__main__":
    _cost_child(sys.argv[1], sys.argv[2])
