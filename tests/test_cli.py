"""The command line as producers and scripts use it: commands, output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO, TEST_ENV, learncast


def test_init_creates_a_documented_workspace_and_refuses_to_overwrite(tmp_path: Path) -> None:
    ws = tmp_path / "new"
    proc = learncast(tmp_path, "init", str(ws))
    assert proc.returncode == 0, proc.stderr
    for folder in ("inbox", "assets", "transcripts", "feeds"):
        assert (ws / folder).is_dir()
    config = (ws / "config" / "learncast.toml").read_text()
    assert "# " in config and tomllib.loads(config)["shows"][0]["id"] == "learning-weekly"
    again = learncast(tmp_path, "init", str(ws))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (ws / "config" / "learncast.toml").read_text() == config


def test_status_json_contract(workspace_dir: Path, tone) -> None:
    tone(workspace_dir / "inbox" / "ok.wav", seconds=2)
    (workspace_dir / "inbox" / "broken.mp3").write_bytes(b"ID3 not really an mp3")
    run = learncast(workspace_dir, "run")
    assert run.returncode == 1
    data = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert isinstance(data, list) and len(data) == 2
    keys = {"id", "show", "title", "source", "sha256", "status", "stage", "error", "files",
            "measurements"}
    for ep in data:
        assert keys <= set(ep)
        assert ep["status"] in {"queued", "processing", "failed", "awaiting-review", "published"}
        for path in ep["files"].values():
            assert (workspace_dir / path).exists()
    by_source = {ep["source"]: ep for ep in data}
    assert by_source["ok.wav"]["status"] == "published"
    assert by_source["ok.wav"]["measurements"]["source_duration_s"] > 1.9
    assert by_source["broken.mp3"]["status"] == "failed"
    assert by_source["broken.mp3"]["stage"] == "ingest"


def test_run_exit_codes_and_per_file_summary(workspace_dir: Path, tone) -> None:
    empty = learncast(workspace_dir, "run")
    assert empty.returncode == 0 and "Nothing to do" in empty.stdout
    tone(workspace_dir / "inbox" / "good.wav", seconds=2)
    (workspace_dir / "inbox" / "zero.wav").write_bytes(b"")
    proc = learncast(workspace_dir, "run")
    assert proc.returncode == 1
    assert "good.wav" in proc.stdout and "zero.wav" in proc.stdout
    assert "empty (0 bytes)" in proc.stdout
    table = learncast(workspace_dir, "status")
    assert table.returncode == 0 and "good" in table.stdout.lower()


def test_config_and_usage_errors_exit_2(workspace_dir: Path) -> None:
    (workspace_dir / "config" / "learncast.toml").write_text("[ingest]\nsettle = 1\n")
    proc = learncast(workspace_dir, "run")
    assert proc.returncode == 2
    assert "unknown key 'ingest.settle'" in proc.stderr and "learncast.toml" in proc.stderr
    assert learncast(workspace_dir, "frobnicate").returncode == 2
    missing = learncast(workspace_dir / "nope", "run")
    assert missing.returncode == 2 and "learncast init" in missing.stderr


def test_workspace_from_environment(workspace_dir: Path, tone) -> None:
    tone(workspace_dir / "inbox" / "a.wav", seconds=2)
    env = {**os.environ, **TEST_ENV, "LEARNCAST_WORKSPACE": str(workspace_dir)}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (workspace_dir / "archive").is_dir() and any((workspace_dir / "archive").iterdir())


def test_retry_of_a_rejected_file_puts_it_back_into_the_inbox(workspace_dir: Path,
                                                             tone) -> None:
    tone(workspace_dir / "inbox" / "ep.wav", seconds=2)
    (workspace_dir / "inbox" / "ep.yaml").write_text("season: two\n")
    assert learncast(workspace_dir, "run").returncode == 1
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    (workspace_dir / "failed" / "ep.yaml").write_text("season: 2\n")  # the producer fixes it
    retry = learncast(workspace_dir, "retry", ep["id"][:6])
    assert retry.returncode == 0, retry.stderr
    assert (workspace_dir / "inbox" / "ep.wav").exists()
    assert not (workspace_dir / "failed" / "ep.wav.error.txt").exists()
    assert learncast(workspace_dir, "run").returncode == 0
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert ep["status"] == "published"


def test_retry_of_an_unknown_or_healthy_episode_is_refused(workspace_dir: Path, tone) -> None:
    assert learncast(workspace_dir, "retry", "ffffff").returncode == 2
    tone(workspace_dir / "inbox" / "a.wav", seconds=2)
    learncast(workspace_dir, "run")
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    proc = learncast(workspace_dir, "retry", ep["id"])
    assert proc.returncode == 1 and "not failed" in proc.stderr


def test_status_shows_how_far_transcription_got(workspace_dir: Path, tone) -> None:
    from pipeline import runner
    from pipeline.media import find_ffmpeg
    from pipeline.models import Status
    from pipeline.state import StateDB
    from pipeline.workspace import Context, open_workspace

    tone(workspace_dir / "inbox" / "talk.wav", seconds=2)
    ws = open_workspace(workspace_dir)
    ctx = Context(workspace=ws, ffmpeg=find_ffmpeg())
    db = StateDB(ws.state_db)
    try:
        runner.ingest_ready(ctx, db, wait=True)
        job = db.claim_next()
        assert job is not None
        db.stage_started(job.id, "transcribe")  # a worker in the middle of transcribing
        db.save(job.replace(status=Status.PROCESSING, stage="transcribe"))
        db.stage_progress(job.id, "transcribe", 42.4, 120.0)
    finally:
        db.close()
    table = learncast(workspace_dir, "status")
    assert table.returncode == 0 and "transcribe 42/120 s" in table.stdout
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert ep["progress"] == {"stage": "transcribe", "done_s": 42.4, "total_s": 120.0}
