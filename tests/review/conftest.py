"""Episodes with captions for the review tests, built the way the pipeline builds them.

Speech recognition on generated tones would caption nothing, so the fixture writes the caption
files the caption stage produces (`transcripts/<show>/<slug>.vtt/.json/.qa.json`) directly,
ingests real media generated with ffmpeg, and runs the real runner up to the review gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import runner
from pipeline.fsutil import atomic_write_text
from pipeline.models import Job
from pipeline.review import cues as cuelib
from pipeline.review.cues import Cue
from pipeline.state import StateDB
from pipeline.workspace import Context

#: (start, end, lines) — cue 3 carries markup a reviewer must see as text, never as HTML.
CUES = [
    (0.5, 2.0, ("Welcome to the onboarding course.",)),
    (2.2, 4.0, ("Today we look at the", "expense policy.")),
    (4.2, 6.0, ("Never type <script>alert(1)</script>", "or </textarea> into forms.")),
    (6.2, 7.6, ("Thanks for listening.",)),
]
#: Word-level recogniser output; "expense" was recognised with low confidence.
LOW_WORD = "expense"


def words_for(cues: list[tuple[float, float, tuple[str, ...]]]) -> list[dict]:
    out = []
    for start, end, lines in cues:
        tokens = " ".join(lines).split()
        step = (end - start) / len(tokens)
        for k, token in enumerate(tokens):
            out.append({"word": token, "start": round(start + k * step, 3),
                        "end": round(start + (k + 1) * step, 3),
                        "probability": 0.3 if token == LOW_WORD else 0.95})
    return out


MakeEpisode = Callable[..., Job]


@pytest.fixture
def make_episode(ctx: Context, db: StateDB, make_media) -> MakeEpisode:
    """make_episode(kind="video"|"audio", name=..., cues=CUES, speakers=[name per cue]):
    ingest real media, write its captions, run the real runner; the episode ends held at (or
    passed through) the gate."""

    def make(kind: str = "video", name: str = "onboarding", seconds: float = 8.0,
             cues: list[tuple[float, float, tuple[str, ...]]] | None = None,
             speakers: list[str | None] | None = None) -> Job:
        cues = CUES if cues is None else cues
        inbox = ctx.workspace.inbox
        if kind == "video":
            media = make_media(inbox / f"{name}.mp4", "-f", "lavfi", "-i",
                               f"testsrc=size=320x240:rate=25:duration={seconds}", "-f",
                               "lavfi", "-i", f"sine=frequency=330:duration={seconds}",
                               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                               "-shortest")
        else:
            media = make_media(inbox / f"{name}.mp3", "-f", "lavfi", "-i",
                               f"sine=frequency=330:duration={seconds}", "-c:a", "libmp3lame")
        [result] = runner.ingest_ready(ctx, wait=True)
        assert result.outcome == "new", result.message
        [job] = [j for j in db.all() if j.source == media.name]
        folder = ctx.workspace.transcripts / job.show
        said = speakers or [None] * len(cues)
        parsed = [Cue(s, e, lines, who) for (s, e, lines), who in zip(cues, said, strict=True)]
        files = {
            "vtt": folder / f"{job.slug}.vtt",
            "json": folder / f"{job.slug}.json",
            "qa": folder / f"{job.slug}.qa.json",
        }
        atomic_write_text(files["vtt"], cuelib.render_vtt(parsed))
        words = words_for(cues)
        atomic_write_text(files["json"], json.dumps(
            {"title": job.title, "language": "en", "words": words,
             "cues": cuelib.cues_json(parsed)}))
        atomic_write_text(files["qa"], json.dumps(
            {"profile": "learncast", "low_confidence_threshold": 0.5,
             "low_confidence_words": [w for w in words if w["probability"] < 0.5],
             "glossary": {}}))
        for key, path in files.items():
            job = job.with_file(key, ctx.workspace.rel(path))
        db.save(job)
        # These files stand for the output of transcribe and caption (real ASR on a tone would
        # caption nothing): record those stages as done; the real runner does the rest —
        # prepare, trim, normalise, encode, chapters, package, the gate, upload and publish.
        for name in ("transcribe", "caption"):
            db.stage_started(job.id, name)
            db.stage_finished(job, name, 0.0)
        runner.work_queue(ctx)
        stored = db.get(job.id)
        assert stored is not None
        return stored

    return make


@pytest.fixture
def artifacts() -> Path:
    """A git-ignored folder for screenshots a person can look at after the run."""
    folder = Path(__file__).resolve().parent.parent / ".artifacts" / "review"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
