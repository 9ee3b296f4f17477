"""Review page costs on short and long episodes: page render and size, list render, one save.

A one-hour episode has roughly 600-1000 cues; a reviewer saves many edits in a session, so a
save (re-render VTT/SRT/TXT/HTML, re-check the profile, edit distance against the original)
must stay well under a second, and the episode page (every cue with its edit forms) must stay
small enough to load and scroll on a laptop. The episodes look like a real day's work: two
speakers, some low-confidence words, a few cues over the reading-speed limit and an audit
trail of earlier edits. The ratio between the two sizes shows how each cost scales.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from pipeline.fsutil import atomic_write_text
from pipeline.models import Job, Status
from pipeline.review import cues as cuelib
from pipeline.review import service
from pipeline.review.app import create_app
from pipeline.sidecar import EpisodeMetadata
from pipeline.state import StateDB
from pipeline.workspace import Context, init_workspace, open_workspace

SIZES = {"5-min (60 cues)": 60, "1-hour (720 cues)": 720}
REPEATS = 5
#: Earlier saves in the audit trail (a reviewer's afternoon).
AUDIT_ROWS = 40


def _cue(k: int) -> cuelib.Cue:
    # every 9th cue reads too fast for the profile, as a few always do
    second = (f"number {k} of a long training session, said rather quickly." if k % 9 == 0
              else f"number {k} of a long training session.")
    return cuelib.Cue(k * 5.0, k * 5.0 + 4.5, ("This is a typical caption line of text,",
                                              second), f"Speaker {1 + (k // 6) % 2}")


def _episode(ctx: Context, db: StateDB, n: int) -> Job:
    cues = [_cue(k) for k in range(n)]
    job = Job(id=f"bench{n:07d}", sha256=f"{n:064d}", show="learning-weekly",
              title=f"Bench {n}", slug=f"bench-{n}", source=f"bench-{n}.mp4",
              original=f"archive/bench-{n}.mp4", probe=None, metadata=EpisodeMetadata(),
              status=Status.AWAITING_REVIEW, stage="review")
    folder = ctx.workspace.transcripts / job.show
    vtt = folder / f"{job.slug}.vtt"
    atomic_write_text(vtt, cuelib.render_vtt(cues))
    words = []
    for k, cue in enumerate(cues):
        tokens = cue.text.split()
        step = (cue.end - cue.start) / len(tokens)
        words += [{"word": w, "start": round(cue.start + i * step, 3),
                   "end": round(cue.start + (i + 1) * step, 3),
                   "probability": 0.3 if (k + i) % 23 == 0 else 0.95}
                  for i, w in enumerate(tokens)]
    low = [w for w in words if w["probability"] < 0.5]
    qa = folder / f"{job.slug}.qa.json"
    atomic_write_text(qa, json.dumps({"profile": "learncast", "low_confidence_words": low}))
    job = job.with_file("vtt", ctx.workspace.rel(vtt)).with_file("qa", ctx.workspace.rel(qa))
    db.insert(job)
    for k in range(AUDIT_ROWS):
        db.add_review(job.id, "Ana Reviewer", "edit", 1, f"edited cue {k * 7 + 1}", "")
    return job


def _median_ms(fn: Any) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def _measure(workdir: Path, case: str, n: int) -> list[dict[str, Any]]:
    root = workdir / f"ws-{n}"
    init_workspace(root)
    ws = open_workspace(root)
    ws.ensure()
    db = StateDB(ws.state_db)
    ctx = Context(workspace=ws, ffmpeg="ffmpeg", state=db)
    job = _episode(ctx, db, n)
    client = create_app(ctx, db).test_client()
    with client.session_transaction() as session:  # a reviewer who has said who they are
        session["reviewer"] = "Ana Reviewer"
    page = client.get(f"/episodes/{job.id}")
    assert page.status_code == 200, page.status_code
    page_kb = round(len(page.data) / 1024, 1)
    page_ms = _median_ms(lambda: client.get(f"/episodes/{job.id}"))
    list_ms = _median_ms(lambda: client.get("/"))

    def save() -> None:
        current = db.get(job.id)
        assert current is not None
        middle = n // 2
        cues = cuelib.edit(service.load_cues(ctx, current), middle,
                           text="An edited caption line.", start=middle * 5.0,
                           end=middle * 5.0 + 4.0)
        service.save_cues(ctx, current.id, cues, reviewer="bench",
                          expected_revision=service.revision(current), what="bench")

    save_ms = _median_ms(save)
    db.close()
    rows = [{"suite": "review", "case": case, "tool": what, "median_ms": ms,
             "ms_per_cue": round(ms / n, 3)}
            for what, ms in (("episode page", page_ms), ("list page", list_ms),
                             ("save one edit", save_ms))]
    rows[0].update(page_kb=page_kb, bytes_per_cue=round(len(page.data) / n),
                   forms=page.data.count(b"<form"))
    return rows


def run(workdir: Path) -> list[dict[str, Any]]:
    return [row for case, n in SIZES.items() for row in _measure(workdir, case, n)]
