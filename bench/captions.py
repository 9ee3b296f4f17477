"""Caption quality benchmark: do cues sit on the speech, and do low-confidence flags mean errors?

Two measurements, both through the real stages (transcribe, then caption) with each engine:

**Timing** on a recording whose speech onsets and offsets are known. It is built from the shared
clips: each clip is decoded to 16 kHz mono, levelled (its loud frames at `LEVEL_DB`), and the
clips are joined with pauses of known, varied length (`PAUSES_S`) over continuous room tone
(low-passed noise at `ROOM_TONE_DB`). The ground truth is measured on each *clean* clip, before
the room tone is added, by a method independent of the one under test (`speech_runs`): 10 ms
frames whose level is above max(loud level − 35 dB, the clip's floor + 15 dB); gaps under
50 ms bridged, then blips under 100 ms (clicks, breaths) dropped, then gaps under 0.3 s
bridged, and runs closer than `MIN_PAUSE_S` joined. A clip with
internal pauses (the Harvard sentences, JFK) gives several runs. Each run's onset is then where
a cue should start and its offset where a cue should end. `jfk.flac` is cut at 10.5 s: the
crowd after it is as loud as the quiet end of "country", so no energy rule could say where
speech stops.

For each run, the recognised words are assigned to the run they overlap most; the cue that
holds the run's first word should start with it, and its start is compared with the onset
(likewise the cue ending with the run's last word against the offset). A run whose first word
is not the first of its cue (a cue spanning the pause before it) is counted as `spanned`.
Reported: median and 90th percentile of |cue start − onset| and |cue end − offset|, the signed
medians, and the same for the words themselves.

**Low-confidence flags.** Every shared clip with a reference transcript is transcribed alone;
the hypothesis words are aligned to the reference words (word-level Levenshtein on normalised
tokens). A hypothesis word is an error when any of its tokens is substituted or inserted. For
each threshold, a word is flagged when its probability is below it; precision = flagged errors
/ flagged words, recall = flagged errors / errors. The sweep is pooled over both engines and
reported per engine, so the configured `[captions] low_confidence` can be chosen from it.

Run: `python -m bench.run captions` (or `python -m bench.captions` for a quick table;
`LEARNCAST_BENCH_CAPTION_ENGINES=faster-whisper` for one engine,
`LEARNCAST_BENCH_CAPTION_PARTS=timing` for the timing part only).
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
RATE = 16_000
FRAME = RATE // 100  # 10 ms
#: Each clip's loud frames (95th percentile of 10 ms levels) are brought to this level.
LEVEL_DB = -14.0
#: Continuous room tone under everything (RMS, dBFS).
ROOM_TONE_DB = -55.0
#: Pauses between clips, cycled: short ones a cue may span, long ones it must not.
PAUSES_S = (0.6, 1.0, 1.6, 2.4, 0.8, 3.0)
#: Silence this long separates two runs of speech (a place a cue should start or end).
MIN_PAUSE_S = 0.5
ENGINES = ("openai-whisper", "faster-whisper")


@dataclass(frozen=True)
class Part:
    """One shared clip in a constructed recording: `name` under the shared audio folder,
    optionally cut to [0, `until_s`)."""

    name: str
    until_s: float | None = None


#: The timing recording: varied voices and sources (TTS, read speech, 8 kHz phone band, a
#: 1961 broadcast with crowd noise), short and long clips.
TIMING_PARTS: tuple[Part, ...] = (
    Part("speechbrain/spk1_snt1.wav"), Part("speechbrain/spk2_snt1.wav"),
    Part("speechbrain/example1.wav"), Part("jfk.flac", 10.5), Part("speechbrain/spk1_snt2.wav"),
    Part("speechbrain/LJ050-0131.wav"), Part("speechbrain/spk2_snt2.wav"),
    Part("speechbrain/spk1_snt3.wav"), Part("speechbrain/example2.flac"),
    Part("OSR_us_000_0034_8k.wav"), Part("speechbrain/spk2_snt3.wav"),
    Part("speechbrain/spk1_snt4.wav"), Part("speechbrain/spk2_snt4.wav"),
    Part("speechbrain/spk1_snt5.wav"),
)
#: A short one for tests (about 15 s): clips with clean edges and varied pauses.
SHORT_PARTS: tuple[Part, ...] = (
    Part("speechbrain/spk1_snt1.wav"), Part("speechbrain/spk2_snt1.wav"),
    Part("speechbrain/example1.wav"), Part("speechbrain/spk1_snt4.wav"),
    Part("speechbrain/spk2_snt3.wav"),
)


@dataclass(frozen=True)
class Run:
    """Speech between two pauses, in seconds of the constructed recording."""

    onset: float
    offset: float
    part: str


@dataclass
class Constructed:
    samples: np.ndarray
    runs: list[Run]
    text: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / RATE


def frame_db(samples: np.ndarray) -> np.ndarray:
    """Level of each 10 ms frame in dBFS (RMS)."""
    n = len(samples) // FRAME
    frames = samples[:n * FRAME].astype(np.float64).reshape(n, FRAME)
    return 10 * np.log10(np.einsum("ij,ij->i", frames, frames) / FRAME + 1e-12)


def _runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def speech_runs(samples: np.ndarray, min_pause_s: float = MIN_PAUSE_S
                ) -> list[tuple[float, float]]:
    """Ground truth on a clean clip: where its speech is, as (onset, offset) seconds.

    Deliberately simpler than (and independent of) the refinement under test: a fixed rule on
    the clip alone, with no room tone added yet.
    """
    db = frame_db(samples)
    if not len(db):
        return []
    loud, floor = float(np.percentile(db, 95)), float(np.percentile(db, 5))
    runs = _runs_of(db > max(loud - 35.0, floor + 15.0))
    for gap, shortest in ((5, 10), (30, 0)):  # frames: bridge gaps, then drop blips
        bridged: list[list[int]] = []
        for a, b in runs:
            if bridged and a - bridged[-1][1] < gap:
                bridged[-1][1] = b
            else:
                bridged.append([a, b])
        runs = [(a, b) for a, b in bridged if b - a >= shortest]
    out: list[list[float]] = []
    for a, b in runs:
        if out and a / 100 - out[-1][1] < min_pause_s:
            out[-1][1] = b / 100
        else:
            out.append([a / 100, b / 100])
    return [(a, b) for a, b in out]


def room_tone(n: int, level_db: float, seed: int = 7) -> np.ndarray:
    """Noise low-passed by an 8-sample moving average (a quiet room, not hiss), `level_db` RMS."""
    rng = np.random.default_rng(seed)
    out = np.convolve(rng.standard_normal(n + 7), np.ones(8) / 8, mode="valid")
    out *= 10 ** (level_db / 20) / max(float(np.sqrt(np.mean(out ** 2))), 1e-12)
    return out.astype(np.float32)


def construct(parts: Sequence[Part], ffmpeg: str, *, pauses: Sequence[float] = PAUSES_S,
              lead_s: float = 1.0, tail_s: float = 1.0,
              room_db: float | None = ROOM_TONE_DB) -> Constructed:
    """Join `parts` with known pauses over room tone; runs measured on each clean clip."""
    from pipeline.asr.audio import decode_16k_mono

    refs = json.loads((SHARED_AUDIO / "references.json").read_text())
    pieces: list[np.ndarray] = [np.zeros(round(lead_s * RATE), np.float32)]
    at = lead_s
    runs: list[Run] = []
    text: list[str] = []
    for k, part in enumerate(parts):
        clip = decode_16k_mono(ffmpeg, SHARED_AUDIO / part.name)
        if part.until_s is not None:
            clip = clip[:round(part.until_s * RATE)]
        gain = LEVEL_DB - float(np.percentile(frame_db(clip), 95))
        clip = (clip * 10 ** (gain / 20)).astype(np.float32)
        runs += [Run(at + a, at + b, part.name) for a, b in speech_runs(clip)]
        text.append(str((refs.get(part.name) or {}).get("reference") or ""))
        pieces.append(clip)
        at += len(clip) / RATE
        pause = pauses[k % len(pauses)] if k + 1 < len(parts) else tail_s
        pieces.append(np.zeros(round(pause * RATE), np.float32))
        at += pause
    samples = np.concatenate(pieces)
    if room_db is not None:
        samples = samples + room_tone(len(samples), room_db)
    return Constructed(samples=samples, runs=runs, text=text)


def write_flac(ffmpeg: str, samples: np.ndarray, dest: Path) -> Path:
    import subprocess

    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "f32le",
                    "-ar", str(RATE), "-ac", "1", "-i", "-", "-c:a", "flac", str(dest)],
                   input=np.ascontiguousarray(samples, dtype="<f4").tobytes(), check=True)
    return dest


# --- timing errors ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class TimedCue:
    start: float
    end: float
    words: tuple[TimedWord, ...]


def cues_from_json(data: dict[str, Any]) -> list[TimedCue]:
    """The caption stage's JSON output (words + cues) as cues holding their words."""
    words = [TimedWord(w["word"], float(w["start"]), float(w["end"])) for w in data["words"]]
    words = [w for w in words if w.text.strip()]
    cues: list[TimedCue] = []
    k = 0
    for cue in data["cues"]:
        count = len(cue["text"].split())
        cues.append(TimedCue(float(cue["start"]), float(cue["end"]), tuple(words[k:k + count])))
        k += count
    if k != len(words):
        raise ValueError(f"cue texts hold {k} words, the transcript {len(words)}")
    return cues


def _assign(words: Sequence[TimedWord], runs: Sequence[Run]) -> list[int]:
    """Index of the run each word overlaps most (margins of 0.25 s), or the nearest."""
    out = []
    for w in words:
        overlaps = [min(w.end, r.offset + 0.25) - max(w.start, r.onset - 0.25) for r in runs]
        best = max(range(len(runs)), key=lambda i: (overlaps[i], i))
        if overlaps[best] <= 0:
            mid = (w.start + w.end) / 2
            best = min(range(len(runs)),
                       key=lambda i: min(abs(mid - runs[i].onset), abs(mid - runs[i].offset)))
        out.append(best)
    return out


def timing_errors(cues: Sequence[TimedCue], runs: Sequence[Run]) -> dict[str, Any]:
    """Cue and word start/end errors against the runs (signed seconds, cue − truth)."""
    words = [w for c in cues for w in c.words]
    owner = {id(w): k for k, c in enumerate(cues) for w in c.words}
    assigned = _assign(words, runs)
    errors: dict[str, list[float]] = {"cue_start": [], "cue_end": [], "word_start": [],
                                      "word_end": []}
    spanned = missed = 0
    for r, run in enumerate(runs):
        mine = [w for w, a in zip(words, assigned, strict=True) if a == r]
        if not mine:
            missed += 1
            continue
        first, last = mine[0], mine[-1]
        errors["word_start"].append(first.start - run.onset)
        errors["word_end"].append(last.end - run.offset)
        cue = cues[owner[id(first)]]
        if cue.words[0] is first:
            errors["cue_start"].append(cue.start - run.onset)
        else:
            spanned += 1
        cue = cues[owner[id(last)]]
        if cue.words[-1] is last:
            errors["cue_end"].append(cue.end - run.offset)
        else:
            spanned += 1
    return {"errors": errors, "spanned": spanned, "missed": missed, "runs": len(runs)}


def percentile(values: Iterable[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return float(np.percentile(ordered, p * 100))


def summarise(errors: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, values in errors.items():
        if not values:
            continue
        mag = [abs(v) for v in values]
        out[f"{key}_median_abs"] = round(statistics.median(mag), 3)
        out[f"{key}_p90_abs"] = round(percentile(mag, 0.9), 3)
        out[f"{key}_median"] = round(statistics.median(values), 3)
    return out


# --- where cues and lines break ----------------------------------------------------------


def ends_sentence(text: str) -> bool:
    return text.rstrip("\"'”’)]").endswith((".", "?", "!", "…"))


def ends_clause(text: str) -> bool:
    return text.rstrip("\"'”’)]").endswith((",", ";", ":", "—", "–", "-"))


#: The measurement's own word lists (not the segmenter's, so a change there cannot move the
#: yardstick): words a line should not end on, words that open a clause or a phrase.
WEAK_ENDINGS = frozenset(
    ["a", "an", "the", "of", "to", "in", "on", "at", "for", "with", "from", "by", "about",
     "into", "onto", "over", "under", "as", "than", "via", "per", "my", "your", "his", "her",
     "its", "our", "their", "this", "that", "these", "those", "and", "or", "but", "nor"]
)
CLAUSE_STARTERS = frozenset(
    ["and", "but", "or", "so", "because", "which", "who", "whom", "whose", "that", "when",
     "where", "while", "if", "although", "though", "unless", "since", "until", "whereas", "then",
     "whether", "once"]
)
PREPOSITIONS = frozenset(
    ["of", "to", "in", "on", "at", "for", "with", "from", "by", "about", "into", "onto", "over",
     "under", "than", "via", "per", "behind", "against", "during", "without", "through",
     "before", "after", "between", "across", "around", "towards", "toward", "within", "upon",
     "among", "beyond", "along", "despite", "throughout", "inside", "outside"]
)


def break_kind(before: str, after: str) -> str:
    """What kind of place the break between two words is (text as recognised)."""
    bare = re.sub(r"[^\w']", "", after.lower())
    if ends_sentence(before):
        return "sentence"
    if re.sub(r"[^\w']", "", before.lower()) in WEAK_ENDINGS and not ends_clause(before):
        return "weak"
    if ends_clause(before):
        return "clause"
    if bare in CLAUSE_STARTERS:
        return "conjunction"
    if bare in PREPOSITIONS:
        return "phrase"
    return "other"


def orphan(words: Sequence[str], k: int, most: int = 2) -> bool:
    """Does a break after words[k] cut a sentence's first or last `most` words off from the
    rest of it ("...what you saw | and heard.")?"""
    if k + 1 >= len(words) or ends_sentence(words[k]):
        return False
    start = k
    while start > 0 and not ends_sentence(words[start - 1]):
        start -= 1
    end = k + 1
    while end < len(words) - 1 and not ends_sentence(words[end]):
        end += 1
    return k - start + 1 <= most or end - k <= most


def break_quality(cue_lines: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Counts of each kind of cue break and line break, and of orphans, for cues given as
    their lines of text."""
    words: list[str] = []
    cue_breaks: list[int] = []
    line_breaks: list[int] = []
    for lines in cue_lines:
        for line in lines:
            words += line.split()
            line_breaks.append(len(words) - 1)
        line_breaks.pop()
        cue_breaks.append(len(words) - 1)
    cue_breaks.pop()
    out: dict[str, Any] = {}
    for name, breaks in (("cue", cue_breaks), ("line", line_breaks)):
        kinds = [break_kind(words[k], words[k + 1]) for k in breaks]
        out[f"{name}_breaks"] = len(kinds)
        for kind in ("sentence", "clause", "conjunction", "phrase", "other", "weak"):
            out[f"{name}_{kind}"] = kinds.count(kind)
        out[f"{name}_orphans"] = sum(orphan(words, k) for k in breaks)
    return out


# --- flags against real errors -------------------------------------------------------------

NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
           "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten"}


def tokens(text: str) -> list[str]:
    """Lowercase word tokens without punctuation (digits 0–10 spelt out, as read aloud)."""
    out = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [NUMBERS.get(t, t) for t in (t.strip("'") for t in out) if t]


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, int | None, int | None]]:
    """Word-level Levenshtein alignment: (op, ref index, hyp index), op in ok/sub/ins/del."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), dtype=np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1,
                          d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops: list[tuple[str, int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("ok" if ref[i - 1] == hyp[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif j and d[i, j] == d[i, j - 1] + 1:
            ops.append(("ins", None, j - 1))
            j -= 1
        else:
            ops.append(("del", i - 1, None))
            i -= 1
    return ops[::-1]


def word_errors(reference: str, words: Sequence[str]) -> list[bool]:
    """For each hypothesis word: is it (any of its tokens) substituted or inserted?"""
    owner: list[int] = []
    hyp: list[str] = []
    for k, w in enumerate(words):
        for t in tokens(w):
            hyp.append(t)
            owner.append(k)
    wrong = [False] * len(words)
    for op, _, j in align(tokens(reference), hyp):
        if op in ("sub", "ins") and j is not None:
            wrong[owner[j]] = True
    return wrong


def precision_recall(data: Sequence[dict[str, Any]], threshold: float, rule: str = "learncast"
                     ) -> dict[str, Any]:
    """Flags against errors over clips (`flag_data` rows). `rule`: `learncast` (what the QA
    report flags, `pipeline.captions.qa.low_confidence_flags`) or `plain` (probability below
    the threshold: the rule before it)."""
    from pipeline.captions.qa import low_confidence_flags

    tp = nf = ne = 0
    for d in data:
        if rule == "plain":
            flagged = [p < threshold for p in d["probs"]]
        else:
            starts = {k for k, first in enumerate(d["segment_first"]) if first}
            flagged = [why is not None
                       for why in low_confidence_flags(d["probs"], threshold, starts)]
        tp += sum(f and w for f, w in zip(flagged, d["wrong"], strict=True))
        nf += sum(flagged)
        ne += sum(d["wrong"])
    precision = tp / nf if nf else 1.0
    recall = tp / ne if ne else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"rule": rule, "threshold": threshold, "flagged": nf, "errors": ne,
            "true_flags": tp, "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(f1, 3)}


def reference_clips() -> list[str]:
    """Shared clips with a reference (the long concatenation repeats them: left out)."""
    refs = json.loads((SHARED_AUDIO / "references.json").read_text())
    return sorted(name for name, r in refs.items() if r.get("reference")
                  and name != "longform_concat_16k.flac")


# --- running the stages ---------------------------------------------------------------------


class Stages:
    """Transcribe + caption in one workspace, models loaded once (as a worker does)."""

    def __init__(self, workdir: Path, engine: str, overrides: dict[str, Any] | None = None
                 ) -> None:
        from pipeline.media import find_ffmpeg
        from pipeline.workspace import Context, init_workspace, open_workspace

        root = workdir / f"ws-{engine}"
        if not (root / "config").exists():
            init_workspace(root)
        settings = {"transcribe": {"engine": engine}, **(overrides or {})}
        ws = open_workspace(root, overrides=settings)
        ws.ensure()
        self.ctx = Context(workspace=ws, ffmpeg=find_ffmpeg())
        self.count = 0

    def job(self, media: Path, title: str = "Bench") -> Any:
        import subprocess

        from pipeline.fsutil import slugify
        from pipeline.media import probe
        from pipeline.models import Job
        from pipeline.sidecar import EpisodeMetadata

        self.count += 1
        job_id = f"bench{self.count:03d}"
        ws = self.ctx.workspace
        folder = ws.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        flac = folder / "master_audio.flac"
        subprocess.run([self.ctx.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i",
                        str(media), "-map", "0:a:0", "-c:a", "flac", str(flac)], check=True)
        return Job(id=job_id, sha256="0" * 64, show=ws.settings.shows[0].id, title=title,
                   slug=f"{slugify(title)}-{job_id}", source=media.name, original=ws.rel(flac),
                   probe=probe(flac), metadata=EpisodeMetadata(),
                   files={"master_audio": ws.rel(flac)})

    def transcribe(self, job: Any) -> Any:
        from pipeline.runner import call_stage
        from pipeline.stages import transcribe

        return call_stage(transcribe, job, self.ctx)

    def caption(self, job: Any) -> tuple[Any, dict[str, Any]]:
        from pipeline.runner import call_stage
        from pipeline.stages import caption

        done = call_stage(caption, job, self.ctx)
        path = self.ctx.workspace.abs(done.files["json"])
        return done, json.loads(path.read_text(encoding="utf-8"))


def measure_timing(stages: Stages, recording: Constructed, media: Path) -> dict[str, Any]:
    job = stages.transcribe(stages.job(media, "Timing"))
    _, data = stages.caption(job)
    measured = timing_errors(cues_from_json(data), recording.runs)
    quality = break_quality([cue["lines"] for cue in data["cues"]])
    return {**summarise(measured["errors"]), "runs": measured["runs"],
            "spanned": measured["spanned"], "missed": measured["missed"],
            "cues": len(data["cues"]),
            **{k: v for k, v in quality.items() if k.startswith("cue_")}}


#: Listening conditions for the flag measurement: the clips as they are, and degraded so that
#: tiny.en makes enough errors to measure against (clean speech gives a handful).
CONDITIONS = ("clean", "noise 6 dB", "babble 6 dB")


def degrade(samples: np.ndarray, condition: str, seed: int = 3) -> np.ndarray:
    """`samples` in `condition`: clean, steady low-passed noise, or babble (three other
    clips played backwards: speech-like, but no words to recognise), at the SNR named."""
    if condition == "clean":
        return samples
    kind, snr = condition.split()[0], float(condition.split()[1])
    if kind == "noise":
        noise = room_tone(len(samples), -30.0, seed)
    else:
        from pipeline.asr.audio import decode_16k_mono
        from pipeline.media import find_ffmpeg

        rng = np.random.default_rng(seed)
        others = rng.choice(reference_clips(), 3, replace=False)
        noise = np.zeros(len(samples))
        for name in others:
            other = decode_16k_mono(find_ffmpeg(), SHARED_AUDIO / str(name))[::-1]
            other = np.resize(other, len(samples))
            noise += other / max(float(np.sqrt(np.mean(other ** 2))), 1e-9)
    speech = float(np.percentile(frame_db(samples), 95))  # loud frames, not pauses
    gain = 10 ** ((speech - snr - float(10 * np.log10(np.mean(noise ** 2) + 1e-12))) / 20)
    return (samples + noise * gain).astype(np.float32)


def flag_data(stages: Stages, conditions: Sequence[str] = CONDITIONS
              ) -> list[dict[str, Any]]:
    """Per reference clip and condition: the words, their probabilities, which are wrong."""
    from pipeline.asr.audio import decode_16k_mono

    refs = json.loads((SHARED_AUDIO / "references.json").read_text())
    folder = stages.ctx.workspace.root / "clips"
    out = []
    for condition in conditions:
        for name in reference_clips():
            media = SHARED_AUDIO / name
            if condition != "clean":
                samples = degrade(decode_16k_mono(stages.ctx.ffmpeg, media), condition)
                media = write_flac(stages.ctx.ffmpeg, samples,
                                   folder / f"{condition}-{name.replace('/', '-')}.flac")
            job = stages.transcribe(stages.job(media, name))
            data = json.loads(
                stages.ctx.workspace.abs(job.files["transcript_words"]).read_text())
            words = [w["word"] for w in data["words"]]
            firsts = {(round(s["words"][0]["start"], 3), s["words"][0]["word"])
                      for s in data["segments"] if s["words"]}
            out.append({"clip": name, "condition": condition, "words": words,
                        "probs": [float(w["probability"]) for w in data["words"]],
                        "segment_first": [(round(w["start"], 3), w["word"]) in firsts
                                          for w in data["words"]],
                        "wrong": word_errors(refs[name]["reference"], words)})
    return out


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def sweep(data: Sequence[dict[str, Any]], thresholds: Sequence[float] = THRESHOLDS
          ) -> list[dict[str, Any]]:
    """Precision/recall per rule and threshold, per condition and over all of them."""
    rows = []
    for condition in (*CONDITIONS, "all"):
        part = [d for d in data if condition in ("all", d["condition"])]
        if not part:
            continue
        for rule in ("plain", "learncast"):
            rows += [{"condition": condition, **precision_recall(part, t, rule)}
                     for t in thresholds]
    return rows


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.media import find_ffmpeg

    engines = os.environ.get("LEARNCAST_BENCH_CAPTION_ENGINES", ",".join(ENGINES)).split(",")
    ffmpeg = find_ffmpeg()
    workdir.mkdir(parents=True, exist_ok=True)
    recording = construct(TIMING_PARTS, ffmpeg)
    media = write_flac(ffmpeg, recording.samples, workdir / "timing.flac")
    parts = os.environ.get("LEARNCAST_BENCH_CAPTION_PARTS", "timing,flags").split(",")
    rows: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    for engine in engines:
        stages = Stages(workdir, engine)
        if "timing" in parts:
            rows.append({"suite": "captions", "case": f"timing, {recording.duration_s:.0f} s "
                         f"constructed", "tool": engine,
                         **measure_timing(stages, recording, media)})
        if "flags" not in parts:
            continue
        data = flag_data(stages)
        pooled += data
        threshold = stages.ctx.settings.captions.low_confidence
        for row in sweep(data, sorted({*THRESHOLDS, threshold})):
            rows.append({"suite": "captions", "case": "low-confidence flags", "tool": engine,
                         "configured": row["threshold"] == threshold, **row})
    if len(engines) > 1:
        for row in sweep(pooled):
            rows.append({"suite": "captions", "case": "low-confidence flags",
                         "tool": "both engines", **row})
    return rows


if __name__ == "__main__":
    import tempfile

    from bench.run import to_markdown

    with tempfile.TemporaryDirectory(prefix="learncast-bench-captions-") as tmp:
        print(to_markdown(run(Path(tmp))))
