"""Suggested chapters and soundbites on recordings made by joining 4–6 different shared clips.

Each join is one recording whose topic changes are known exactly: the clip boundaries. It goes
through the real pipeline (`learncast run`: trim, normalise, faster-whisper tiny.en, the
chapters stage with suggestions on from 60 s, soundbites, no audiogram), and the suggested
chapter starts are compared with the joins: a suggestion within `TOLERANCE_S` of a join is a
hit (each join and each suggestion counted once). Reported per join and overall: precision
(hits / suggestions) and recall (hits / joins), beside the soundbites chosen (length and
loudness re-measured from the MP3s). The clips are short (4–60 s), so the joined recordings
last two to three minutes: chapter length and window scale down with them (automatic
settings, a fifteenth and a sixth of the recording).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
TOLERANCE_S = 10.0
GAP_S = 0.8  # silence between the clips, as in the shared longform join

#: Clip sets: each a different order and mix of the shared recordings.
JOINS: dict[str, list[str]] = {
    "A (5 clips)": ["OSR_us_000_0034_8k.wav", "jfk.flac", "fw_multilingual.mp3",
                    "speechbrain/LJ050-0131.wav", "fw_stereo_diarization.wav"],
    "B (4 clips)": ["fw_multilingual.mp3", "OSR_us_000_0034_8k.wav",
                    "speechbrain/LJ050-0131.wav", "jfk.flac"],
    "C (6 clips)": ["jfk.flac", "speechbrain/spk1_snt1.wav", "OSR_us_000_0034_8k.wav",
                    "speechbrain/LJ050-0131.wav", "fw_multilingual.mp3",
                    "speechbrain/example1.wav"],
}


def make_join(dest: Path, clips: list[str], ffmpeg: str) -> tuple[Path, list[float]]:
    """Join `clips` (44.1 kHz mono, GAP_S of silence between); returns the file and the
    times (recording time) where each clip after the first starts."""
    import av

    inputs: list[str] = []
    parts: list[str] = []
    joins: list[float] = []
    elapsed = 0.0
    for i, name in enumerate(clips):
        path = SHARED_AUDIO / name
        with av.open(str(path)) as c:
            length = (c.duration or 0) / av.time_base
        inputs += ["-i", str(path)]
        pad = f",apad=pad_dur={GAP_S}" if i < len(clips) - 1 else ""
        parts.append(f"[{i}:a]aresample=44100,aformat=channel_layouts=mono{pad}[a{i}]")
        if i:
            joins.append(round(elapsed, 3))
        elapsed += length + (GAP_S if i < len(clips) - 1 else 0.0)
    graph = ";".join(parts) + ";" + "".join(f"[a{i}]" for i in range(len(clips))) + \
        f"concat=n={len(clips)}:v=0:a=1"
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs,
                    "-filter_complex", graph, "-c:a", "flac", str(dest)], check=True)
    return dest, joins


def match(found: list[float], joins: list[float], tolerance: float = TOLERANCE_S
          ) -> tuple[int, float, float]:
    """Hits (one-to-one, nearest first), precision and recall."""
    pairs = sorted((abs(f - j), a, b) for a, f in enumerate(found) for b, j in enumerate(joins)
                   if abs(f - j) <= tolerance)
    used_f: set[int] = set()
    used_j: set[int] = set()
    for _, a, b in pairs:
        if a not in used_f and b not in used_j:
            used_f.add(a)
            used_j.add(b)
    hits = len(used_f)
    return (hits, round(hits / len(found), 3) if found else 0.0,
            round(hits / len(joins), 3) if joins else 0.0)


def evaluate(workspace: Path, joins: list[float]) -> dict[str, Any]:
    """Suggested chapter starts (recording time) of the one episode in `workspace`, against
    the joins; and its soundbites as published."""
    from pipeline.audio.loudness import measure
    from pipeline.media import find_ffmpeg
    from pipeline.state import StateDB
    from pipeline.workspace import open_workspace

    ws = open_workspace(workspace)
    db = StateDB(ws.state_db)
    try:
        (job,) = db.all()
    finally:
        db.close()
    timeline = job.timeline
    marks = [m for m in job.results.chapters or [] if m.toc]
    starts = [timeline.content_to_recording(max(m.start - timeline.intro_s, 0.0))
              for m in marks[1:]]  # the first chapter starts the episode, not a topic change
    hits, precision, recall = match(starts, joins)
    bites = job.results.soundbites or []
    ff = find_ffmpeg()
    loud = [round(measure(ff, ws.abs(job.files[a])).integrated, 1)
            for a in job.files if a.value.startswith("soundbite_")]
    return {"status": str(job.status), "joins_s": joins,
            "suggested_s": [round(s, 1) for s in starts],
            "titles": [m.title for m in marks], "hits": hits, "precision": precision,
            "recall": recall, "all_suggested": all(m.suggested for m in marks),
            "soundbites_s": [b.duration for b in bites], "soundbite_lufs": loud,
            "target_lufs": job.results.loudness.target_i if job.results.loudness else None}


def run(workdir: Path) -> list[dict[str, Any]]:
    from pipeline.media import find_ffmpeg
    from pipeline.workspace import init_workspace

    ff = find_ffmpeg()
    rows: list[dict[str, Any]] = []
    total = {"hits": 0, "found": 0, "joins": 0}
    for case, clips in JOINS.items():
        ws = workdir / case.split()[0]
        init_workspace(ws)
        _recording, joins = make_join(ws / "inbox" / "joined.flac", clips, ff)
        env = {**os.environ, "LEARNCAST_TRANSCRIBE__ENGINE": "faster-whisper",
               "LEARNCAST_INGEST__SETTLE_SECONDS": "0.2",
               "LEARNCAST_CHAPTERS__SUGGEST_MIN_DURATION_S": "60"}
        proc = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(ws), "run"],
                              cwd=REPO, env=env, capture_output=True, text=True, check=False)
        row = {"suite": "highlights", "case": case, "tool": "learncast (faster-whisper)",
               "clips": ", ".join(Path(c).stem for c in clips), "returncode": proc.returncode}
        row.update(evaluate(ws, joins))
        total["hits"] += row["hits"]
        total["found"] += len(row["suggested_s"])
        total["joins"] += len(joins)
        rows.append(row)
    rows.append({"suite": "highlights", "case": "all joins", "tool": "learncast",
                 "hits": total["hits"], "suggested": total["found"], "joins": total["joins"],
                 "precision": round(total["hits"] / total["found"], 3) if total["found"] else 0,
                 "recall": round(total["hits"] / total["joins"], 3)})
    return rows


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-work")),
                     indent=2))
