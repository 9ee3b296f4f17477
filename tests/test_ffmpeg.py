"""The ffmpeg binary: the start-up probe, error lines that explain, and broken binaries.

Fake "ffmpeg"s here are shell scripts written by the test (real executables, as far as the
pipeline can tell) that hand most questions to the bundled ffmpeg and lie about one thing.
A binary missing a shared library is a copy of `true` whose libc dependency is renamed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest

from pipeline import ffmpeg as ff
from pipeline.audio.loudness import measure
from pipeline.errors import ConfigError, PipelineError, ToolError
from tests.conftest import learncast

PASS_ON = 'exec "$REAL" "$@"'  # hand the question to the real (bundled) ffmpeg


def _script(tmp_path: Path, name: str, body: str, real: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\nREAL='{real}'\nulimit -c 0\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _missing_library_binary(tmp_path: Path) -> Path:
    """A real ELF binary the dynamic loader refuses: `true` needing libc.so.0."""
    true = Path(shutil.which("true") or "/bin/true").resolve()
    data = true.read_bytes()
    assert b"libc.so.6" in data, "expected a glibc-linked `true`"
    broken = tmp_path / "ffmpeg-missing-lib"
    broken.write_bytes(data.replace(b"libc.so.6", b"libc.so.0"))
    broken.chmod(0o755)
    return broken


@pytest.fixture(autouse=True)
def _fresh_probe_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test probes its own binaries; the process memo would hide a second probe."""
    monkeypatch.setattr(ff, "_probed", {})


# --- the start-up probe ------------------------------------------------------------------


def test_the_bundled_ffmpeg_has_everything_the_pipeline_needs(ffmpeg: str) -> None:
    caps, problems = ff.probe(ffmpeg)
    assert problems == []
    version = ff._parse_version(caps.version)
    assert version is not None and version >= ff.MIN_VERSION
    assert caps.filter_script_option in ("-/filter_complex", "-filter_complex_script")


def test_an_old_ffmpeg_is_refused_with_its_version_and_what_to_do(tmp_path: Path,
                                                                  ffmpeg: str) -> None:
    fake = _script(tmp_path, "ffmpeg", """case "$*" in *-version*)
  echo "ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers"
  echo "configuration: --enable-libmp3lame --enable-libsoxr --enable-libx264"
  exit 0;;
esac
""" + PASS_ON, ffmpeg)
    with pytest.raises(ConfigError) as refused:
        ff.require_ffmpeg(str(fake))
    message = str(refused.value)
    assert "version 4.4.2-0ubuntu0.22.04.1; Learncast needs 5.1 or newer" in message
    assert f"ffmpeg.path = '{fake}'" in message
    assert "Clear [ffmpeg] path" in message and "bundled ffmpeg" in message


def test_an_ffmpeg_without_an_encoder_is_refused_naming_it(tmp_path: Path,
                                                           ffmpeg: str) -> None:
    fake = _script(tmp_path, "ffmpeg", """case "$*" in *-encoders*)
  "$REAL" "$@" | grep -v ' libmp3lame '; exit 0;;
esac
""" + PASS_ON, ffmpeg)
    with pytest.raises(ConfigError) as refused:
        ff.require_ffmpeg(str(fake))
    message = str(refused.value)
    assert "encoder libmp3lame is missing (needed for the MP3)" in message
    assert "install an ffmpeg 5.1 or newer built with libmp3lame" in message
    assert message.count("\n  - ") == 1, message  # nothing else is blamed


def test_a_missing_filter_option_value_is_named(tmp_path: Path, ffmpeg: str) -> None:
    """ffmpeg 5.1's ebur128 has `framelog` but not every named value a newer one has."""
    fake = _script(tmp_path, "ffmpeg", """case "$*" in *filter=ebur128*)
  "$REAL" "$@" | grep -v ' verbose '; exit 0;;
esac
""" + PASS_ON, ffmpeg)
    with pytest.raises(ConfigError, match=r"filter ebur128 lacks option framelog=verbose "
                                          r"\(needed for measuring loudness\)"):
        ff.require_ffmpeg(str(fake))


def test_a_soxr_less_build_is_refused(tmp_path: Path, ffmpeg: str) -> None:
    """aresample lists `soxr` even when the build has no libsoxr; the configuration tells."""
    fake = _script(tmp_path, "ffmpeg", """case "$*" in *-version*)
  "$REAL" "$@" | sed 's/--enable-libsoxr//'; exit 0;;
esac
""" + PASS_ON, ffmpeg)
    with pytest.raises(ConfigError, match="it was built without libsoxr"):
        ff.require_ffmpeg(str(fake))


def test_a_non_executable_file_is_refused(tmp_path: Path, ffmpeg: str) -> None:
    plain = tmp_path / "ffmpeg"
    plain.write_bytes(Path(ffmpeg).read_bytes()[:4096])
    plain.chmod(0o644)
    with pytest.raises(ConfigError, match="it cannot be started: Permission denied"):
        ff.require_ffmpeg(str(plain))


def test_a_binary_missing_a_shared_library_is_refused(tmp_path: Path) -> None:
    broken = _missing_library_binary(tmp_path)
    with pytest.raises(ConfigError, match=r"it cannot run: .*error while loading shared "
                                          r"libraries: libc\.so\.0"):
        ff.require_ffmpeg(str(broken))


def test_something_that_is_not_ffmpeg_is_refused(tmp_path: Path) -> None:
    fake = _script(tmp_path, "ffmpeg", "exit 0", "unused")
    with pytest.raises(ConfigError, match="does not answer `-version` like ffmpeg"):
        ff.require_ffmpeg(str(fake))


def test_a_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist or is not executable"):
        ff.require_ffmpeg(str(tmp_path / "nope" / "ffmpeg"))


def test_the_probe_is_cached_until_the_binary_changes(tmp_path: Path, ffmpeg: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    fake = _script(tmp_path, "ffmpeg", f'echo x >> "{calls}"\n' + PASS_ON, ffmpeg)
    state = tmp_path / "state"

    def probes() -> int:
        count = len(calls.read_text().splitlines()) if calls.exists() else 0
        calls.unlink(missing_ok=True)
        return count

    ff.require_ffmpeg(str(fake), cache_dir=state)
    assert probes() > 5  # version, the lists, each component's options
    entry = json.loads((state / ff.CACHE_FILE).read_text())[str(fake.resolve())]
    assert entry["key"]["size"] == fake.stat().st_size

    monkeypatch.setattr(ff, "_probed", {})  # as a new process would start
    ff.require_ffmpeg(str(fake), cache_dir=state)
    assert probes() == 0

    monkeypatch.setattr(ff, "_probed", {})
    fake.write_text(fake.read_text() + "# upgraded\n")  # another binary at the same path
    ff.require_ffmpeg(str(fake), cache_dir=state)
    assert probes() > 5


def test_a_failed_probe_is_not_cached(tmp_path: Path, ffmpeg: str) -> None:
    fake = _script(tmp_path, "ffmpeg", """case "$*" in *-encoders*)
  "$REAL" "$@" | grep -v ' aac '; exit 0;;
esac
""" + PASS_ON, ffmpeg)
    for _ in range(2):
        with pytest.raises(ConfigError, match="encoder aac is missing"):
            ff.require_ffmpeg(str(fake), cache_dir=tmp_path / "state")
    assert not (tmp_path / "state" / ff.CACHE_FILE).exists()


# --- what a failure says -----------------------------------------------------------------


def test_a_failure_quotes_ffmpegs_first_error_line(ffmpeg: str, tone, tmp_path: Path) -> None:
    src = tone(tmp_path / "a.wav", seconds=1)
    with pytest.raises(PipelineError) as failed:
        ff.run_ffmpeg(ffmpeg, ["-i", str(src), "-c:a", "nosuchcodec", str(tmp_path / "o.mp3")],
                      what="encoding the MP3 of a.wav")
    message = str(failed.value)
    assert message.startswith("ffmpeg failed while encoding the MP3 of a.wav: "
                              "Unknown encoder 'nosuchcodec' (exit ")
    assert "@ 0x" not in message and "Conversion failed" not in message
    assert not isinstance(failed.value, ToolError)


def test_a_measurement_failure_quotes_the_line_that_explains_it(ffmpeg: str, tone,
                                                               tmp_path: Path) -> None:
    src = tone(tmp_path / "b.wav", seconds=1)
    with pytest.raises(PipelineError) as failed:
        measure(ffmpeg, src, stream="a:3")
    message = str(failed.value)
    assert message.startswith('could not measure the loudness of b.wav: ffmpeg said "')
    assert "matches no streams" in message and "@ 0x" not in message


def test_first_error_skips_context_and_prefers_the_first_tagged_line() -> None:
    lines = [
        "[info] Input #0, wav, from 's.wav':",
        "[ebur128 @ 0x5577] [Eval @ 0x7fff] [error] Undefined constant or missing '(' in "
        "'quiet'",
        "[ebur128 @ 0x5577] [error] Unable to parse option value \"quiet\"",
        "[error] Error reinitializing filters!",
    ]
    log = ff.Log().read(line.encode() for line in lines)
    assert log.first_error == "Undefined constant or missing '(' in 'quiet'"
    assert ff.Log().read([b"[info] x", b"last words", b""]).first_error == "last words"
    assert ff.Log().first_error == "ffmpeg printed no error message"


def test_the_log_keeps_only_a_bounded_amount(ffmpeg: str) -> None:
    log = ff.Log(keep_after="Summary:")
    for i in range(100_000):
        log.feed(f"[Parsed_ebur128_0 @ 0x1] [error] frame {i}".encode())
    log.feed(b"[Parsed_ebur128_0 @ 0x1] [info] Summary:")
    log.feed(b"  I: -16.0 LUFS")
    assert len(log.errors) <= 100 and len(log.tail) <= 20
    assert log.kept == ["[Parsed_ebur128_0 @ 0x1] [info] Summary:", "  I: -16.0 LUFS"]


# --- a binary that breaks mid-run --------------------------------------------------------


def test_a_crash_raises_tool_error_not_a_recording_error(tmp_path: Path, ffmpeg: str, tone
                                                         ) -> None:
    src = tone(tmp_path / "c.wav", seconds=1)
    crashing = _script(tmp_path, "ffmpeg", "kill -SEGV $$", ffmpeg)
    with pytest.raises(ToolError, match=r"was killed by SIGSEGV while trimming c\.wav\. "
                                        r"This is a fault of the ffmpeg binary"):
        ff.run_ffmpeg(str(crashing), ["-i", str(src), str(tmp_path / "o.flac")],
                      what="trimming c.wav")
    with pytest.raises(ToolError, match=r"could not run while .*error while loading shared "
                                        r"libraries"):
        ff.run_ffmpeg(str(_missing_library_binary(tmp_path)), ["-i", str(src)], what="x")
    crashing.chmod(0o644)
    with pytest.raises(ToolError, match="cannot be started while x: Permission denied"):
        ff.run_ffmpeg(str(crashing), ["-i", str(src)], what="x")


def _crash_when(tmp_path: Path, real: str, marker: str) -> Path:
    """An ffmpeg that answers the start-up probe but crashes on work whose arguments contain
    `marker` — as a binary whose library was replaced underneath a running service would."""
    return _script(tmp_path, "ffmpeg", f'case " $* " in *" {marker} "*) kill -SEGV $$;; esac\n'
                                       + PASS_ON, real)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_crash_at_ingest_leaves_the_recording_in_the_inbox(workspace_dir: Path, tone,
                                                             ffmpeg: str, tmp_path: Path
                                                             ) -> None:
    inbox = workspace_dir / "inbox"
    rec = tone(inbox / "talk.wav", seconds=2)
    (inbox / "talk.yaml").write_text("title: A talk\n")
    before = _digest(rec)
    crashing = _crash_when(tmp_path, ffmpeg, "-i")  # check_decodes is the first to decode
    proc = learncast(workspace_dir, "run", env={"LEARNCAST_FFMPEG__PATH": str(crashing)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "was killed by SIGSEGV while decoding talk.wav" in proc.stderr
    assert "not of the recording" in proc.stderr
    assert _digest(inbox / "talk.wav") == before
    assert (inbox / "talk.yaml").read_text() == "title: A talk\n"
    assert not (workspace_dir / "failed").exists() or not any(
        (workspace_dir / "failed").iterdir())
    assert json.loads(learncast(workspace_dir, "status", "--json").stdout) == []
    assert not any((workspace_dir / "work" / ".claims").iterdir())

    fixed = learncast(workspace_dir, "run", env={"LEARNCAST_FFMPEG__PATH": ""})
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    [episode] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert episode["status"] == "published" and episode["title"] == "A talk"


def test_a_crash_in_a_stage_keeps_the_episode_queued(workspace_dir: Path, tone, ffmpeg: str,
                                                     tmp_path: Path) -> None:
    tone(workspace_dir / "inbox" / "talk.wav", seconds=2)
    crashing = _crash_when(tmp_path, ffmpeg, "-frame_size")  # prepare's FLAC working copy
    proc = learncast(workspace_dir, "run", env={"LEARNCAST_FFMPEG__PATH": str(crashing)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "was killed by SIGSEGV while extracting the audio of talk.wav" in proc.stderr
    [episode] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert episode["status"] == "queued" and episode["error"] is None
    assert not (workspace_dir / "failed").exists() or not any(
        (workspace_dir / "failed").iterdir())

    fixed = learncast(workspace_dir, "run", env={"LEARNCAST_FFMPEG__PATH": ""})
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    [episode] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert episode["status"] == "published"


def test_a_broken_ffmpeg_is_refused_before_anything_is_touched(workspace_dir: Path, tone,
                                                               tmp_path: Path) -> None:
    rec = tone(workspace_dir / "inbox" / "talk.wav", seconds=2)
    before = _digest(rec)
    broken = _missing_library_binary(tmp_path)
    proc = learncast(workspace_dir, "run", env={"LEARNCAST_FFMPEG__PATH": str(broken)})
    assert proc.returncode == 2
    assert f"ffmpeg.path = '{broken}'" in proc.stderr
    assert "error while loading shared libraries" in proc.stderr
    assert "Clear [ffmpeg] path" in proc.stderr
    assert _digest(rec) == before
    assert not any((workspace_dir / "archive").rglob("*"))
    status = learncast(workspace_dir, "status", env={"LEARNCAST_FFMPEG__PATH": str(broken)})
    assert status.returncode == 0, status.stderr  # status runs no ffmpeg
