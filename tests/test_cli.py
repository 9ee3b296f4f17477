"""The command line as producers and scripts use it: commands, output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_ENV, learncast

#: Run again with the system ffmpeg by `make test-system-ffmpeg`.
pytestmark = pytest.mark.whole_recording


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


def test_init_plants_the_owner_email(tmp_path: Path) -> None:
    proc = learncast(tmp_path, "init", str(tmp_path / "a"), "--owner-email", "ld@example.com")
    assert proc.returncode == 0, proc.stderr
    config = tomllib.loads((tmp_path / "a" / "config" / "learncast.toml").read_text())
    assert config["shows"][0]["owner_email"] == "ld@example.com"
    bad = learncast(tmp_path, "init", str(tmp_path / "b"), "--owner-email", "not-an-address")
    assert bad.returncode == 2 and "not an e-mail address" in bad.stderr
    assert not (tmp_path / "b" / "config").exists()


def test_status_json_contract(workspace_dir: Path, tone) -> None:
    tone(workspace_dir / "inbox" / "ok.wav", seconds=2)
    (workspace_dir / "inbox" / "broken.mp3").write_bytes(b"ID3 not really an mp3")
    run = learncast(workspace_dir, "run")
    assert run.returncode == 1
    data = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert isinstance(data, list) and len(data) == 1  # a rejected drop is not an episode
    keys = {"id", "show", "title", "source", "sha256", "status", "stage", "error", "files",
            "objects", "results", "measurements"}
    for ep in data:
        assert keys <= set(ep)
        assert ep["status"] in {"queued", "processing", "failed", "awaiting-review", "published"}
        # the numbered clips are lists (`files.soundbites`), everything else one path
        assert isinstance(ep["files"]["soundbites"], list)
        for value in ep["files"].values():
            for path in value if isinstance(value, list) else [value]:
                assert (workspace_dir / path).exists()
    [ok] = data
    assert (ok["source"], ok["status"]) == ("ok.wav", "published")
    assert ok["measurements"]["source_duration_s"] > 1.9
    assert ok["results"]["timeline"]["durations"]["audio"] > 1.9
    assert ok["objects"]["audio"]["url"].startswith("http://localhost:8080/")
    listed = learncast(workspace_dir, "failed")
    assert listed.returncode == 0 and "broken.mp3: " in listed.stdout


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


def test_a_rejected_drop_is_fixed_and_dropped_again_or_cleared(workspace_dir: Path,
                                                               tone) -> None:
    tone(workspace_dir / "inbox" / "ep.wav", seconds=2)
    (workspace_dir / "inbox" / "ep.yaml").write_text("season: two\n")
    tone(workspace_dir / "inbox" / "other.wav", seconds=2)
    (workspace_dir / "inbox" / "other.yaml").write_text("show: nope\n")
    assert learncast(workspace_dir, "run").returncode == 1
    assert json.loads(learncast(workspace_dir, "status", "--json").stdout) == []
    failed = workspace_dir / "failed"
    note = (failed / "ep.wav.error.txt").read_text()
    assert "did not become an episode" in note and "learncast retry" not in note
    listed = learncast(workspace_dir, "failed").stdout
    assert "ep.wav: sidecar ep.yaml is invalid" in listed and "other.wav" in listed
    (failed / "ep.yaml").write_text("season: 2\n")  # the producer fixes it, drops it again
    for name in ("ep.wav", "ep.yaml"):
        (failed / name).rename(workspace_dir / "inbox" / name)
    assert learncast(workspace_dir, "run").returncode == 0
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert ep["status"] == "published"
    cleared = learncast(workspace_dir, "failed", "--clear")
    assert cleared.returncode == 0, cleared.stderr
    assert sorted(p.name for p in failed.iterdir()) == []


def test_retry_of_an_unknown_or_healthy_episode_is_refused(workspace_dir: Path, tone) -> None:
    assert learncast(workspace_dir, "retry", "ffffff").returncode == 2
    tone(workspace_dir / "inbox" / "a.wav", seconds=2)
    learncast(workspace_dir, "run")
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    proc = learncast(workspace_dir, "retry", ep["id"])
    assert proc.returncode == 1 and "not failed" in proc.stderr


def test_the_sample_briefing_is_published_as_make_run_does(tmp_path: Path) -> None:
    """The quick start: the shipped config and sample video, through every stage (with
    the system ffmpeg too, where `make run` used to fail at normalise)."""
    import shutil

    ws = tmp_path / "repo"
    shutil.copytree(REPO / "config", ws / "config")
    shutil.copytree(REPO / "assets", ws / "assets")
    (ws / "inbox").mkdir()
    for sample in (REPO / "assets" / "samples").iterdir():
        shutil.copy(sample, ws / "inbox" / sample.name)
    proc = learncast(ws, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "weekly-briefing-feedback.mp4 → episode" in proc.stdout
    [episode] = json.loads(learncast(ws, "status", "--json").stdout)
    assert episode["status"] == "published" and episode["kind"] == "video"
    assert {"audio", "video", "vtt"} <= set(episode["files"])


def test_worker_needs_a_queue_and_a_shared_database(workspace_dir: Path) -> None:
    proc = learncast(workspace_dir, "worker")
    assert proc.returncode == 2 and "queue.url is empty" in proc.stderr
    proc = learncast(workspace_dir, "worker",
                     env={"LEARNCAST_QUEUE__URL": "redis://127.0.0.1:1/0"})
    assert proc.returncode == 2 and "state.url is empty" in proc.stderr
    proc = learncast(workspace_dir, "worker", "--queues", "gpu",
                     env={"LEARNCAST_QUEUE__URL": "redis://127.0.0.1:1/0",
                          "LEARNCAST_STATE__URL": "postgresql://x@127.0.0.1:1/x"})
    assert proc.returncode == 2 and "unknown queue(s) gpu" in proc.stderr
    proc = learncast(workspace_dir, "config", env={"LEARNCAST_QUEUE__URL": "amqp://x"})
    assert proc.returncode == 2 and "queue.url" in proc.stderr


def test_migrate_reports_the_schema(workspace_dir: Path) -> None:
    proc = learncast(workspace_dir, "migrate")
    assert proc.returncode == 0, proc.stderr
    assert "upgraded from version 0" in proc.stdout and "episodes: none" in proc.stdout
    proc = learncast(workspace_dir, "migrate")
    assert "up to date" in proc.stdout


@pytest.mark.slow
def test_migrate_a_postgresql_database(workspace_dir: Path, pg_url: str) -> None:
    proc = learncast(workspace_dir, "migrate", env={"LEARNCAST_STATE__URL": pg_url})
    assert proc.returncode == 0, proc.stderr
    assert "postgresql+psycopg://postgres@" in proc.stdout and "upgraded" in proc.stdout
    status = learncast(workspace_dir, "status", env={"LEARNCAST_STATE__URL": pg_url})
    assert status.returncode == 0 and "No episodes yet" in status.stdout


def test_an_episode_awaiting_review_is_given_its_next_step(workspace_dir: Path,
                                                           make_media) -> None:
    """Videos wait for caption approval by default: `run` and `status` say where to go."""
    make_media(workspace_dir / "inbox" / "clip.mp4", "-f", "lavfi", "-i",
               "testsrc=duration=2:size=320x240:rate=25", "-f", "lavfi", "-i",
               "sine=duration=2", "-shortest", "-pix_fmt", "yuv420p")
    env = {"LEARNCAST_REVIEW__PORT": "8123"}
    run = learncast(workspace_dir, "run", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    [episode] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert episode["status"] == "awaiting-review"
    url = f"http://127.0.0.1:8123/episodes/{episode['id']}"
    status = learncast(workspace_dir, "status", env=env)
    for proc in (run, status):
        assert "learncast review" in proc.stdout and url in proc.stdout, proc.stdout


def test_status_shows_how_far_transcription_got(workspace_dir: Path, tone) -> None:
    from pipeline import runner
    from pipeline.media import find_ffmpeg
    from pipeline.models import Status
    from pipeline.state import StateDB
    from pipeline.workspace import Context, open_workspace

    tone(workspace_dir / "inbox" / "talk.wav", seconds=2)
    ws = open_workspace(workspace_dir)
    db = StateDB(ws.state_db)
    ctx = Context(workspace=ws, ffmpeg=find_ffmpeg(), state=db)
    try:
        runner.ingest_ready(ctx, wait=True)
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
