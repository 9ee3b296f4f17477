"""Ingest: only complete files, claimed once, checked, archived untouched, or rejected clearly."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from pipeline.ingest import InboxScanner, is_candidate
from pipeline.models import Status
from pipeline.runner import ingest_ready, process_inbox
from pipeline.state import StateDB
from pipeline.workspace import Context


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rejected(ctx: Context, db: StateDB, name: str) -> str:
    """Run one ingest and return the error note written for `name`."""
    report = process_inbox(ctx)
    assert [r.outcome for r in report.ingested if r.name == name] == ["rejected"], report
    assert report.exit_code == 1
    assert (ctx.workspace.failed / name).exists(), "the original must be kept in failed/"
    assert not (ctx.workspace.inbox / name).exists()
    return (ctx.workspace.failed / f"{name}.error.txt").read_text()


def test_accepts_audio_and_archives_the_original_byte_identical(
        ctx: Context, db: StateDB, tone) -> None:
    src = tone(ctx.workspace.inbox / "Weekly briefing_01.wav", seconds=2)
    digest = sha(src)
    report = process_inbox(ctx)
    assert report.exit_code == 0
    [result] = report.ingested
    job = db.get(result.job_id)
    assert job is not None
    assert job.sha256 == digest and job.source == "Weekly briefing_01.wav"
    assert job.title == "Weekly briefing 01"
    assert job.slug.isascii() and job.slug.startswith("weekly-briefing-01-")
    assert sha(ctx.workspace.abs(job.original)) == digest
    assert job.kind == "audio" and job.probe and abs(job.probe.duration_s - 2) < 0.05


def test_sidecar_fields_are_applied(ctx: Context, db: StateDB, tone) -> None:
    tone(ctx.workspace.inbox / "ep.wav", seconds=2)
    (ctx.workspace.inbox / "ep.yaml").write_text(
        "title: Café & <Culture>\nseason: 2\nepisode: 5\npublish_date: 2026-12-01\n"
        "glossary: [Kubernetes, OKR]\nspeakers: [Ana Ruiz, ' Ben ']\n"
        "chapters:\n  - {start: '0:00', title: Intro}\n"
        "  - {start: '0:01.5', title: Main}\n")
    report = process_inbox(ctx)
    job = db.get(report.ingested[0].job_id)
    assert job is not None
    assert job.title == "Café & <Culture>" and job.slug.startswith("cafe-culture-")
    assert (job.metadata.season, job.metadata.episode) == (2, 5)
    assert [c.start for c in job.metadata.chapters] == [0.0, 1.5]
    assert job.metadata.speakers == ["Ana Ruiz", "Ben"]
    assert job.metadata.publish_date is not None and job.metadata.publish_date.tzinfo
    assert (ctx.workspace.archive / job.id / "ep.yaml").exists()


def test_video_is_probed_as_video(ctx: Context, db: StateDB, make_media) -> None:
    make_media(ctx.workspace.inbox / "clip.mp4", "-f", "lavfi", "-i",
               "testsrc=duration=2:size=320x240:rate=25", "-f", "lavfi", "-i",
               "sine=duration=2", "-shortest", "-pix_fmt", "yuv420p")
    report = process_inbox(ctx)
    job = db.get(report.ingested[0].job_id)
    assert job is not None and job.probe and job.probe.video
    assert (job.probe.video.width, job.probe.video.height, job.probe.video.fps) == (320, 240, 25)


def test_rejects_zero_bytes(ctx: Context, db: StateDB) -> None:
    (ctx.workspace.inbox / "empty.mp3").write_bytes(b"")
    assert "empty (0 bytes)" in rejected(ctx, db, "empty.mp3")


def test_rejects_text_with_a_media_extension(ctx: Context, db: StateDB) -> None:
    (ctx.workspace.inbox / "notes.mp4").write_text("meeting notes, not a video\n" * 50)
    assert "cannot read it as audio or video" in rejected(ctx, db, "notes.mp4")


def test_rejects_truncated_wav(ctx: Context, db: StateDB, tone, tmp_path: Path) -> None:
    full = tone(tmp_path / "full.wav", seconds=4)
    (ctx.workspace.inbox / "cut.wav").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert "WAV file is truncated" in rejected(ctx, db, "cut.wav")


def test_rejects_truncated_mp3(ctx: Context, db: StateDB, make_media, tmp_path: Path) -> None:
    full = make_media(tmp_path / "full.mp3", "-f", "lavfi", "-i", "sine=duration=10",
                      "-b:a", "128k")
    (ctx.workspace.inbox / "cut.mp3").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert "truncated" in rejected(ctx, db, "cut.mp3")


@pytest.mark.parametrize("faststart", [True, False])
def test_rejects_truncated_mp4(ctx: Context, db: StateDB, make_media, tmp_path: Path,
                               faststart: bool) -> None:
    flags = ["-movflags", "+faststart"] if faststart else []
    full = make_media(tmp_path / "full.mp4", "-f", "lavfi", "-i",
                      "testsrc=duration=4:size=320x240", "-f", "lavfi", "-i", "sine=duration=4",
                      "-shortest", "-pix_fmt", "yuv420p", *flags)
    (ctx.workspace.inbox / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    note = rejected(ctx, db, "cut.mp4")
    assert "truncated" in note or "cut off" in note


def test_rejects_video_without_audio(ctx: Context, db: StateDB, make_media) -> None:
    make_media(ctx.workspace.inbox / "silent-film.mp4", "-f", "lavfi", "-i",
               "testsrc=duration=2:size=320x240", "-pix_fmt", "yuv420p")
    assert "no audio track" in rejected(ctx, db, "silent-film.mp4")


def test_rejects_too_short_and_too_long(ctx: Context, db: StateDB, tone,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tone(ctx.workspace.inbox / "blip.wav", seconds=0.2)
    assert "at least 1 s is required" in rejected(ctx, db, "blip.wav")
    limits = ctx.settings.ingest.model_copy(update={"max_duration_s": 3.0})
    settings = ctx.settings.model_copy(update={"ingest": limits})
    monkeypatch.setattr(ctx, "workspace", ctx.workspace.__class__(ctx.workspace.root, settings))
    tone(ctx.workspace.inbox / "long.wav", seconds=5)
    assert "ingest.max_duration_s" in rejected(ctx, db, "long.wav")


@pytest.mark.parametrize(("sidecar", "expected"), [
    ("title: [unclosed\n", "not valid YAML"),
    ("title: ok\nspeaker: Ann\n", "unknown field 'speaker'"),
    ("season: two\n", "field 'season'"),
    ("show: no-such-show\n", "'no-such-show' is not a configured show"),
    ("chapters:\n  - {start: '1:00', title: B}\n  - {start: 5, title: A}\n", "increasing"),
    ("description: " + "x" * 5000 + "\n", "at most 4000"),
    ("speakers: [Ana, ana]\n", "speaker names must be different"),
    ("speakers: ['Dr: Who']\n", "cannot contain <, >, & or :"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_rejects_bad_sidecars_naming_the_field(ctx: Context, db: StateDB, tone, sidecar: str,
                                               expected: str) -> None:
    tone(ctx.workspace.inbox / "ep.wav", seconds=2)
    (ctx.workspace.inbox / "ep.yaml").write_text(sidecar)
    note = rejected(ctx, db, "ep.wav")
    assert expected in note and "ep.yaml" in note
    assert (ctx.workspace.failed / "ep.yaml").exists(), "the sidecar goes along to failed/"


def test_json_sidecar(ctx: Context, db: StateDB, tone) -> None:
    tone(ctx.workspace.inbox / "ep.wav", seconds=2)
    (ctx.workspace.inbox / "ep.json").write_text('{"title": "From JSON", "explicit": true}')
    job = db.get(process_inbox(ctx).ingested[0].job_id)
    assert job is not None and job.title == "From JSON" and job.metadata.explicit


def test_rejects_symlink_without_following_it(ctx: Context, db: StateDB, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the pipeline")
    (ctx.workspace.inbox / "link.mp3").symlink_to(secret)
    assert "symbolic link" in rejected(ctx, db, "link.mp3")
    assert secret.read_text() == "not for the pipeline"
    assert (ctx.workspace.failed / "link.mp3").is_symlink()


def test_temporary_names_are_ignored() -> None:
    for name in ("a.mp4.part", "a.crdownload", ".hidden.wav", ".~lock.wav#", "x.tmp",
                 "ep.yaml", "ep.json", "ep.wav.error.txt"):
        assert not is_candidate(Path("/nonexistent") / name), name


def test_temporary_file_is_left_until_renamed(ctx: Context, db: StateDB, tone,
                                              tmp_path: Path) -> None:
    part = ctx.workspace.inbox / "upload.wav.part"
    part.write_bytes(tone(tmp_path / "upload.wav", seconds=2).read_bytes())
    assert process_inbox(ctx).ingested == []
    assert part.exists()
    part.rename(ctx.workspace.inbox / "upload.wav")
    assert [r.outcome for r in process_inbox(ctx).ingested] == ["new"]


def test_growing_file_is_not_taken_until_it_stops_changing(ctx: Context, tone,
                                                           tmp_path: Path) -> None:
    data = tone(tmp_path / "whole.wav", seconds=3).read_bytes()
    dest = ctx.workspace.inbox / "growing.wav"
    dest.write_bytes(data[:1000])
    scanner = InboxScanner(ctx.workspace.inbox, settle_seconds=0.3)
    assert scanner.poll() == ([], [dest])
    for i in range(2, 6):  # keeps growing: never ready
        time.sleep(0.2)
        dest.write_bytes(data[: 1000 * i])
        ready, pending = scanner.poll()
        assert ready == [] and pending == [dest]
    dest.write_bytes(data)
    time.sleep(0.35)
    scanner.poll()
    time.sleep(0.35)
    assert scanner.poll() == ([dest], [])


def test_run_waits_for_a_file_still_being_written(ctx: Context, db: StateDB, tone,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = tone(tmp_path / "whole.wav", seconds=3).read_bytes()
    dest = ctx.workspace.inbox / "slow-copy.wav"
    dest.write_bytes(b"")
    # a generous settle time: pauses between writes on a busy machine must not look "done"
    limits = ctx.settings.ingest.model_copy(update={"settle_seconds": 1.0})
    settings = ctx.settings.model_copy(update={"ingest": limits})
    monkeypatch.setattr(ctx, "workspace", ctx.workspace.__class__(ctx.workspace.root, settings))

    def writer() -> None:
        with open(dest, "wb") as fh:
            for i in range(0, len(data), len(data) // 8):
                fh.write(data[i:i + len(data) // 8])
                fh.flush()
                time.sleep(0.1)

    t = threading.Thread(target=writer)
    t.start()
    try:
        results = ingest_ready(ctx, wait=True)
    finally:
        t.join()
    assert [r.outcome for r in results] == ["new"]
    job = db.get(results[0].job_id)
    assert job is not None and job.sha256 == hashlib.sha256(data).hexdigest()


def test_same_content_under_another_name_is_one_episode(ctx: Context, db: StateDB,
                                                        tone) -> None:
    first = tone(ctx.workspace.inbox / "monday.wav", seconds=2)
    data = first.read_bytes()
    process_inbox(ctx)
    (ctx.workspace.inbox / "monday-copy.wav").write_bytes(data)
    report = process_inbox(ctx)
    assert [r.outcome for r in report.ingested] == ["duplicate"]
    assert report.exit_code == 0
    assert len(db.all()) == 1
    kept = list((ctx.workspace.archive).glob("*/duplicates/monday-copy.wav"))
    assert len(kept) == 1 and kept[0].read_bytes() == data


def test_fixed_redrop_after_rejection_is_ingested(ctx: Context, db: StateDB, tone) -> None:
    wav = tone(ctx.workspace.inbox / "ep.wav", seconds=2)
    data = wav.read_bytes()
    (ctx.workspace.inbox / "ep.yaml").write_text("season: two\n")
    assert process_inbox(ctx).exit_code == 1
    (ctx.workspace.inbox / "ep.wav").write_bytes(data)
    (ctx.workspace.inbox / "ep.yaml").write_text("season: 2\n")
    report = process_inbox(ctx)
    assert [r.outcome for r in report.ingested] == ["new"]
    [job] = db.all()
    assert job.status is not Status.FAILED and job.metadata.season == 2


def test_orphaned_claim_from_a_crash_is_recovered(ctx: Context, db: StateDB, tone) -> None:
    # A process died right after claiming: its claim folder names a pid that no longer runs.
    folder = ctx.workspace.claims / "deadbeef0000"
    folder.mkdir(parents=True)
    (folder / "owner").write_text(f"{os.uname().nodename}:999999999:0")
    tone(folder / "claimed.wav", seconds=2)
    report = process_inbox(ctx)
    assert [r.outcome for r in report.ingested] == ["new"]
    assert not any(ctx.workspace.claims.iterdir())
