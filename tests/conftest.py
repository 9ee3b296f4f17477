"""Shared fixtures: a fresh workspace per test, the real ffmpeg, media generated at test time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.ffmpeg import find_ffmpeg, require_ffmpeg
from pipeline.state import StateDB
from pipeline.workspace import Context, init_workspace, open_workspace

#: Fixture plugins: the moto S3 server and fault-injecting proxy, episodes stored through the
#: storage backend, ASR/caption fixtures (session-loaded whisper models, WebVTT validator), and
#: one headless chromium per session for the review page and `serve` browser tests, real
#: PostgreSQL and Redis servers for the distributed tests.
pytest_plugins = ["tests.storage.s3fixtures", "tests.feeds.plugin", "tests.asr.fixtures",
                  "tests.review.browser", "tests.servers", "tests.notify.servers"]

REPO = Path(__file__).resolve().parent.parent

SHARED_AUDIO = Path(os.environ.get("LEARNCAST_SHARED_AUDIO", REPO.parent / "shared" / "audio"))

#: Fast settings for tests: files settle quickly, retries do not wait.
TEST_ENV = {
    "LEARNCAST_INGEST__SETTLE_SECONDS": "0.2",
    "LEARNCAST_INGEST__WAIT_SECONDS": "10",
    "LEARNCAST_RUNNER__RETRY_BACKOFF_S": "0.01",
    "LEARNCAST_RUNNER__POLL_SECONDS": "0.2",
    # Whole-pipeline tests use the fast engine; tests/asr and the caption tests exercise both.
    "LEARNCAST_TRANSCRIBE__ENGINE": "faster-whisper",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `longest` first (a stable sort keeps the rest in order): with xdist's
    load scheduling a long test collected last would run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """The ffmpeg tests make and re-measure media with: always the bundled build (it has
    every encoder and option the fixtures use), whichever one the pipeline runs."""
    return find_ffmpeg()


@pytest.fixture(scope="session")
def pipeline_ffmpeg() -> str:
    """The ffmpeg the pipeline runs: the bundled one, or `LEARNCAST_FFMPEG__PATH` when set
    (`make test-system-ffmpeg` sets Debian's), probed as the CLI probes it. CLI runs in
    child processes inherit the variable, so they run the same binary."""
    return require_ffmpeg(os.environ.get("LEARNCAST_FFMPEG__PATH", ""))


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    if not SHARED_AUDIO.is_dir():  # a failure, not a skip: CI has this folder
        pytest.fail(f"shared test audio not found at {SHARED_AUDIO}; set LEARNCAST_SHARED_AUDIO")
    return SHARED_AUDIO


@pytest.fixture
def test_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(TEST_ENV)


@pytest.fixture
def workspace_dir(tmp_path: Path, test_env: dict[str, str]) -> Path:
    root = tmp_path / "ws"
    init_workspace(root)
    return root


@pytest.fixture
def ctx(workspace_dir: Path, pipeline_ffmpeg: str) -> Iterator[Context]:
    ws = open_workspace(workspace_dir)
    ws.ensure()
    state = StateDB(ws.state_db)
    yield Context(workspace=ws, ffmpeg=pipeline_ffmpeg, state=state)
    state.close()


@pytest.fixture
def db(ctx: Context) -> StateDB:
    """The test workspace's state store (the same one `ctx.db` is)."""
    return ctx.db


MakeMedia = Callable[..., Path]


@pytest.fixture
def make_media(ffmpeg: str) -> MakeMedia:
    """Generate media with ffmpeg's lavfi sources: make_media(path, "-f", "lavfi", ...)."""

    def make(path: Path, *args: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", *args,
                        str(path)], check=True)
        return path

    return make


@pytest.fixture
def tone(make_media: MakeMedia) -> Callable[..., Path]:
    """A sine tone: tone(path, seconds=3, freq=440, rate=44100, channels=1)."""

    def make(path: Path, seconds: float = 3.0, freq: int = 440, rate: int = 44100,
             channels: int = 1) -> Path:
        return make_media(path, "-f", "lavfi", "-i",
                          f"sine=frequency={freq}:duration={seconds}:sample_rate={rate}",
                          "-ac", str(channels))

    return make


def learncast(workspace: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a producer would."""
    full_env = {**os.environ, **TEST_ENV, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(workspace),
                           *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=REPO)
