"""Ingest: only complete files, claimed once, checked, archived untouched, or rejected clearly."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from pipeline import media
from pipeline.ingest import InboxScanner, is_candidate
from pipeline.models import Job, Status
from pipeline.runner import ingest_ready, process_inbox, work_queue
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.conftest import learncast
from tests.dropping import (
    Drop,
    check_status,
    digest,
    drop,
    failed_files,
    make_good,
    run_and_check,
)

#: Run again with the system ffmpeg by `make test-system-ffmpeg`.
pytestmark = pytest.mark.whole_recording


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



# --- One bad file never stops the pipeline (issue 13) ------------------------------------
# Each case goes through the real CLI beside a good recording; tests/dropping.py checks the
# promise (the others processed, a note saying what to do, the original kept byte for byte,
# `status` and `status --json` still working, and a second run with nothing to trip over).


def _sidecar_drops(ffmpeg: str, inbox: Path, sidecars: dict[str, str]) -> dict[str, Drop]:
    """A distinct recording beside each sidecar (named by the sidecar's stem)."""
    drops = {}
    for i, (name, text) in enumerate(sidecars.items()):
        wav = make_good(ffmpeg, inbox, Path(name).stem + ".wav", freq=400 + 20 * i)
        (inbox / name).write_text(text)
        drops[Path(name).stem] = drop(wav)
    return drops


def test_non_finite_chapter_times_are_refused_at_the_door(workspace_dir: Path,
                                                          ffmpeg: str) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    drops = _sidecar_drops(ffmpeg, inbox, {
        "inf.yaml": "chapters:\n  - {start: .inf, title: Intro}\n",
        "nan.yaml": "chapters:\n  - {start: .nan, title: Intro}\n",
        "e309.yaml": "chapters:\n  - {start: '1e309', title: Intro}\n",
        "e309json.json": '{"chapters": [{"start": 1e309, "title": "Intro"}]}',
        "nanjson.json": '{"chapters": [{"start": NaN, "title": "Intro"}]}',
    })
    checked = run_and_check(workspace_dir, list(drops.values()))
    for text in checked.notes.values():
        assert "chapter 1" in text and "'start'" in text and "seconds" in text, text


def test_pathological_sidecars_are_quarantined_once(workspace_dir: Path, ffmpeg: str) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    drops = _sidecar_drops(ffmpeg, inbox, {
        "deepjson.json": '{"title": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "deepyaml.yaml": "title: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "digits.json": '{"season": ' + "7" * 5000 + "}",
    })
    drops["mem"] = drop(make_good(ffmpeg, inbox, "mem.wav", freq=900))
    (inbox / "mem.yaml").symlink_to("/proc/self/mem")
    notes = run_and_check(workspace_dir, list(drops.values())).notes
    assert "nested" in notes[drops["deepjson"]] and "nested" in notes[drops["deepyaml"]]
    assert "5000 digits" in notes[drops["digits"]]
    assert "symbolic link" in notes[drops["mem"]]


def test_symlinked_sidecars_are_refused_and_never_quoted(workspace_dir: Path, ffmpeg: str,
                                                         tmp_path: Path) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    secret = tmp_path / "credentials"
    secret.write_text("[default]\naws_secret_access_key: [wJalrXUtnFEMI-SECRET\n")
    leak = drop(make_good(ffmpeg, inbox, "leak.wav", freq=500))
    (inbox / "leak.yaml").symlink_to(secret)
    checked = run_and_check(workspace_dir, [leak])
    assert "symbolic link" in checked.notes[leak]
    assert "wJalr" not in checked.output  # main quoted "aws_secret_access_key: [wJalrXUt ..."
    for path in (workspace_dir / "failed").iterdir():
        if not path.is_symlink():
            assert b"wJalr" not in path.read_bytes(), path
    assert secret.read_text().startswith("[default]")


def test_undecodable_names_are_kept_and_shown_escaped(workspace_dir: Path, ffmpeg: str,
                                                      tmp_path: Path) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    raw_good = os.fsencode(inbox) + b"/caf\xe9-\xff.wav"
    os.rename(make_good(ffmpeg, tmp_path, "latin1.wav", freq=600), raw_good)
    good_digest = digest(raw_good)
    raw_bad = os.fsencode(inbox) + b"/agenda-\xe9.mp4"
    with open(raw_bad, "wb") as fh:
        fh.write(b"meeting notes, not a video\n" * 50)
    bad = drop(raw_bad)
    checked = run_and_check(workspace_dir, [bad])
    assert "agenda-\\xe9.mp4" in checked.notes[bad]
    [episode] = [e for e in checked.episodes if e["source"] != "good.wav"]
    assert episode["source"] == "caf\\xe9-\\xff.wav" and episode["status"] == "published"
    assert digest(workspace_dir / episode["files"]["original"]) == good_digest


def test_names_of_250_bytes_work_end_to_end(workspace_dir: Path, ffmpeg: str,
                                            make_media) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    long_good = make_good(ffmpeg, inbox, "é" * 123 + ".wav", freq=350)  # 250 bytes
    not_media = inbox / ("ü" * 123 + ".mp4")
    not_media.write_text("meeting notes, not a video\n" * 50)
    with_sidecar = make_good(ffmpeg, inbox, "ö" * 122 + "x.wav", freq=370)
    (inbox / ("ö" * 122 + "x.yaml")).write_text("season: two\n")
    silent = make_media(inbox / ("s" * 246 + ".wav"), "-f", "lavfi", "-i",
                        "anullsrc=r=44100:cl=mono", "-t", "3")  # fails later, at normalise
    drops = {p.name: drop(p) for p in (not_media, with_sidecar, silent)}
    checked = run_and_check(workspace_dir, list(drops.values()))
    assert "retry" in checked.notes[drops[silent.name]]
    assert "season" in checked.notes[drops[with_sidecar.name]]
    by_source = {e["source"]: e for e in checked.episodes}
    assert by_source[long_good.name]["status"] == "published"
    assert len(by_source[long_good.name]["slug"]) <= 80


def test_a_copy_that_stalls_is_taken_only_once_it_is_complete(workspace_dir: Path,
                                                              ffmpeg: str,
                                                              make_media) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    # An MP3 without a Xing header: its duration is estimated from its size, so a file cut
    # short looks whole. The copy writes 8 of 20 s, then stalls far longer than settle_seconds.
    full = make_media(workspace_dir.parent / "full.mp3", "-f", "lavfi", "-i",
                      "sine=frequency=440:duration=20", "-b:a", "128k", "-write_xing", "0")
    data = full.read_bytes()
    env = {"LEARNCAST_INGEST__WAIT_SECONDS": "2"}
    with open(inbox / "stalled.mp3", "wb") as copy:
        copy.write(data[: len(data) * 2 // 5])
        copy.flush()
        first = learncast(workspace_dir, "run", env=env)
        assert "Traceback" not in first.stderr and first.returncode == 0, first.stderr[-3000:]
        assert "stalled.mp3: still being written" in first.stdout, first.stdout
        assert [e["source"] for e in check_status(workspace_dir)] == ["good.wav"]
        copy.write(data[len(data) * 2 // 5:])
    second = learncast(workspace_dir, "run", env=env)
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    episode = {e["source"]: e for e in check_status(workspace_dir)}["stalled.mp3"]
    assert episode["status"] == "published" and episode["duration_s"] > 19.5, episode
    assert episode["sha256"] == digest(full)
    assert digest(workspace_dir / episode["files"]["original"]) == digest(full)


def test_an_original_that_changes_after_ingest_fails_clearly(ctx: Context, db: StateDB,
                                                             tone) -> None:
    """A copy that resumes after the file was taken writes into the archived original: the
    next stage notices, instead of publishing what was there before."""
    tone(ctx.workspace.inbox / "ep.wav", seconds=2)
    [result] = ingest_ready(ctx, wait=True)
    job = db.get(result.job_id)
    assert job is not None
    with open(ctx.workspace.abs(job.original), "ab") as fh:
        fh.write(b"\0" * 4096)
    [outcome] = work_queue(ctx)
    assert outcome.status is Status.FAILED
    assert outcome.error and "changed since" in outcome.error
    assert "drop the complete recording" in outcome.error.lower()


def test_oversized_pictures_are_refused_before_decoding(workspace_dir: Path, ffmpeg: str,
                                                        make_media) -> None:
    """Limits from [ingest] (lowered here so small files can stand in for 16000x16000)."""
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    wide = make_media(inbox / "wide.mkv", "-f", "lavfi", "-i",
                      "testsrc=duration=2:size=640x120:rate=5", "-f", "lavfi", "-i",
                      "sine=duration=2", "-shortest", "-pix_fmt", "yuv420p")
    many = make_media(inbox / "many.mkv", "-f", "lavfi", "-i",
                      "testsrc=duration=2:size=200x400:rate=5", "-f", "lavfi", "-i",
                      "sine=duration=2", "-shortest", "-pix_fmt", "yuv420p")
    drops = {p.name: drop(p) for p in (wide, many)}
    env = {"LEARNCAST_INGEST__MAX_VIDEO_WIDTH": "600",
           "LEARNCAST_INGEST__MAX_VIDEO_PIXELS": "70000"}
    notes = run_and_check(workspace_dir, list(drops.values()), env=env).notes
    assert "640x120" in notes[drops["wide.mkv"]]
    assert "ingest.max_video_width" in notes[drops["wide.mkv"]]
    assert "ingest.max_video_pixels" in notes[drops["many.mkv"]]


def test_what_publishing_would_refuse_is_refused_at_the_door(workspace_dir: Path,
                                                             ffmpeg: str) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    drops = _sidecar_drops(ffmpeg, inbox, {
        "bell.yaml": 'title: "Weekly\\x07 briefing"\n',
        "escape.json": '{"description": "red \\u001b[31m text"}',
        "blank.yaml": 'title: "   "\n',
        "chapter.yaml": 'chapters:\n  - {start: 0, title: "Intro\\x00"}\n',
        "surrogate.json": '{"title": "half \\ud800 a character"}',
        "far.yaml": "publish_date: 9999-12-31T23:00:00-05:00\n",
        "ancient.yaml": "publish_date: 0001-01-01\n",
    })
    # Accepted, and `status` must still print its table (rich once read it as markup).
    make_good(ffmpeg, inbox, "brackets.wav", freq=950)
    (inbox / "brackets.yaml").write_text('title: "Q&A [/end] [bold]"\n')
    notes = run_and_check(workspace_dir, list(drops.values())).notes
    assert "control character" in notes[drops["bell"]] and "'title'" in notes[drops["bell"]]
    assert "control character" in notes[drops["escape"]]
    assert "'title'" in notes[drops["blank"]] and "empty" in notes[drops["blank"]]
    assert "chapter 1" in notes[drops["chapter"]]
    assert "'title'" in notes[drops["surrogate"]]
    for name in ("far", "ancient"):
        assert "'publish_date'" in notes[drops[name]] and "between" in notes[drops[name]]


def test_every_sidecar_problem_is_reported_at_once_in_plain_words(workspace_dir: Path,
                                                                  ffmpeg: str) -> None:
    inbox = workspace_dir / "inbox"
    make_good(ffmpeg, inbox)
    drops = _sidecar_drops(ffmpeg, inbox, {
        "many.yaml": ("season: two\nepisode: 0\nepisode_type: special\ncolour: red\n"
                      "explicit: maybe\npublish_date: next tuesday\nshow: nope\n"
                      "chapters:\n  - {start: '1:00', title: B}\n  - {start: 5, title: A}\n"),
        "syntax.yaml": "title: [oops\n",
    })
    notes = run_and_check(workspace_dir, list(drops.values())).notes
    many = notes[drops["many"]]
    for words in ("'season': 'two' is not a whole number", "'episode': 0",
                  "'episode_type': 'special'", "full, trailer or bonus",
                  "unknown field 'colour'", "'explicit': 'maybe'", "true or false",
                  "'publish_date': 'next tuesday'", "'nope' is not a configured show",
                  "increasing"):
        assert words in many, (words, many)
    syntax = notes[drops["syntax"]]
    assert "not valid YAML" in syntax and "line 2" in syntax
    for jargon in ("Value error", "<unicode string>", "(sidecar)", "input_value", "type=",
                   "pydantic", "_parsing"):
        assert jargon not in many and jargon not in syntax, jargon


def test_names_of_255_bytes_survive_repeated_drops(workspace_dir: Path, ffmpeg: str,
                                                   tmp_path: Path) -> None:
    """The longest name a filesystem takes, dropped again and again: duplicates and
    rejections of the same name need derived names (`name (2).ext`) that still fit."""
    inbox = workspace_dir / "inbox"
    name = "a" + "é" * 125 + ".wav"  # 255 bytes
    assert len(name.encode()) == 255
    good = make_good(ffmpeg, tmp_path, "good-long.wav", freq=330).read_bytes()
    for round_ in range(3):
        (inbox / name).write_bytes(good)
        bad = inbox / ("b" + "é" * 125 + ".mp4")
        bad.write_text(f"not a video, round {round_}\n" * 20)
        bad_drop = drop(bad)
        proc = learncast(workspace_dir, "run")
        assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr[-3000:]
        assert bad_drop.sha256 in failed_files(workspace_dir)
        assert not any(inbox.iterdir())
    [episode] = check_status(workspace_dir)
    assert episode["source"] == name and episode["status"] == "published"
    kept = [digest(p) for p in (workspace_dir / "archive").rglob("*.wav")]
    assert kept.count(hashlib.sha256(good).hexdigest()) == 3  # the original, two duplicates


@pytest.mark.parametrize("where", ["probe", "insert"])
def test_an_unexpected_error_quarantines_only_that_file(ctx: Context, db: StateDB, tone,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        where: str) -> None:
    """A bug met by one file (simulated here, before or after it was archived) sets that file
    aside; the batch goes on, and no claim folder is left to crash every later run."""
    real_probe, real_insert = media.probe, db.insert

    def buggy_probe(path: Path, **kwargs: object) -> media.Probe:
        if path.name == "buggy.wav":
            raise RuntimeError("simulated bug")
        return real_probe(path, **kwargs)

    def buggy_insert(job: Job) -> None:
        if job.source == "buggy.wav":
            raise RuntimeError("simulated bug")
        real_insert(job)

    if where == "probe":
        monkeypatch.setattr(media, "probe", buggy_probe)
    else:
        monkeypatch.setattr(db, "insert", buggy_insert)
    data = tone(ctx.workspace.inbox / "buggy.wav", seconds=2, freq=700).read_bytes()
    tone(ctx.workspace.inbox / "fine.wav", seconds=2, freq=300)
    report = process_inbox(ctx)
    outcomes = {r.name: r.outcome for r in report.ingested}
    assert outcomes == {"buggy.wav": "rejected", "fine.wav": "new"}
    note = (ctx.workspace.failed / "buggy.wav.error.txt").read_text()
    assert "RuntimeError: simulated bug" in note and "Learncast bug" in note
    assert (ctx.workspace.failed / "buggy.wav").read_bytes() == data
    assert [j.status for j in db.all()] == [Status.PUBLISHED]
    assert not any(ctx.workspace.claims.iterdir())
    assert [p.name for p in ctx.workspace.archive.rglob("*.wav")] == ["fine.wav"]


def test_a_file_whose_ingest_keeps_killing_the_process_is_set_aside(ctx: Context, db: StateDB,
                                                                    tone) -> None:
    """A claim left by a process that died while taking the file in, for the second time
    (say the file made it run out of memory): it is quarantined, not tried a third time."""
    folder = ctx.workspace.claims / "deadbeef0001"
    folder.mkdir(parents=True)
    (folder / "owner").write_text(f"{os.uname().nodename}:999999999:0")
    (folder / ".attempts").write_text("2")
    tone(folder / "killer.wav", seconds=2)
    report = process_inbox(ctx)
    assert [(r.name, r.outcome) for r in report.ingested] == [("killer.wav", "rejected")]
    assert "stopped 2 times" in (ctx.workspace.failed / "killer.wav.error.txt").read_text()
    assert db.all() == [] and not any(ctx.workspace.claims.iterdir())
