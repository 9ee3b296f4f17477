from __future__ import annotations

from pathlib import Path

from pipeline import media
from pipeline.runner import process_inbox
from pipeline.state import StateDB
from pipeline.workspace import Context


def test_prepare_extracts_lossless_audio_and_downmixes_surround(
        ctx: Context, db: StateDB, make_media) -> None:
    make_media(ctx.workspace.inbox / "surround.mkv", "-f", "lavfi", "-i",
               "sine=frequency=300:duration=2.5:sample_rate=48000", "-ac", "6")
    report = process_inbox(ctx, db)
    [outcome] = report.processed
    job = db.get(outcome.job_id)
    assert job is not None and job.probe is not None
    assert job.probe.audio.channels == 6
    flac = ctx.workspace.abs(job.files["source_audio"])
    p = media.probe(flac)
    assert (p.container, p.audio.channels, p.audio.sample_rate) == ("flac", 2, 48000)
    assert abs(p.duration_s - 2.5) < 0.05
    # the original is untouched in the archive
    assert Path(ctx.workspace.abs(job.original)).stat().st_size == job.probe.size_bytes
