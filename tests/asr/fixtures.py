"""Fixtures for ASR and caption tests: models loaded once per session, jobs on real speech.

Whisper on shared CPU cores is slow, so each engine is loaded once for the whole session and
handed to every stage run through `Context.resources` (exactly how the runner shares it).
The WebVTT validator is the npm package `webvtt-parser` (the W3C validator's parser),
installed on first use into the git-ignored `tests/.node/`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.asr.audio import SAMPLE_RATE, decode_16k_mono
from pipeline.asr.engines import engine_key, load_engine
from pipeline.asr.threads import plan_threads
from pipeline.config import Settings
from pipeline.fsutil import slugify
from pipeline.media import probe
from pipeline.models import Job
from pipeline.review.cues import word_edit_distance
from pipeline.sidecar import EpisodeMetadata
from pipeline.workspace import Context, open_workspace
from tests.node import node_modules

REPO = Path(__file__).resolve().parent.parent.parent
VALIDATOR_JS = Path(__file__).resolve().parent.parent / "captions" / "validate_vtt.js"


@pytest.fixture(scope="session")
def asr_resources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One engine per (engine, model) for the session, loaded on first request."""
    return {}


@pytest.fixture(scope="session")
def load_asr(asr_resources: dict[str, Any],
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    models = tmp_path_factory.mktemp("models")

    # the threads a default `learncast run` gives each worker here (cores // workers)
    threads = plan_threads(0, Settings().runner.worker_count).threads

    def load(engine: str, model: str = "tiny.en", compute_type: str = "int8") -> Any:
        key = engine_key(engine, model, compute_type)
        if key not in asr_resources:
            asr_resources[key] = load_engine(engine, model, models, threads=threads,
                                             compute_type=compute_type)
        return asr_resources[key]

    return load


def room_tone(seconds: float, dbfs: float = -50.0, seed: int = 3) -> np.ndarray:
    """Low-level room tone: white noise through a one-pole low-pass (a pink-ish hiss and
    rumble), at `dbfs` RMS, 16 kHz."""
    white = np.random.default_rng(seed).standard_normal(round(seconds * SAMPLE_RATE))
    spectrum = np.fft.rfft(white)
    spectrum /= np.abs(1 - 0.97 * np.exp(-2j * np.pi * np.fft.rfftfreq(len(white))))
    tone = np.fft.irfft(spectrum, len(white))
    tone -= tone.mean()
    return (tone / np.sqrt(np.mean(tone ** 2)) * 10 ** (dbfs / 20)).astype(np.float32)


@dataclass(frozen=True)
class SpeechWithPauses:
    """3 s room tone, JFK (11 s), 4 s room tone, one sentence (2.9 s), 0.6 s room tone."""

    audio: np.ndarray
    #: (start, end) in seconds where each recording was placed; its speech lies inside.
    placed: list[tuple[float, float]]
    #: Where each recording's first word begins (JFK's "And" 0.32 s into his clip).
    onsets: list[float]
    references: list[str]


@pytest.fixture(scope="session")
def speech_with_pauses(ffmpeg: str, shared_audio: Path) -> SpeechWithPauses:
    jfk = decode_16k_mono(ffmpeg, shared_audio / "jfk.flac")
    child = decode_16k_mono(ffmpeg, shared_audio / "speechbrain" / "spk1_snt1.wav")
    audio = np.concatenate([room_tone(3.0, seed=1), jfk, room_tone(4.0, seed=2), child,
                            room_tone(0.6, seed=4)])
    s = SAMPLE_RATE
    refs = references(shared_audio)
    return SpeechWithPauses(audio, [(3.0, 3.0 + len(jfk) / s), (18.0, 18.0 + len(child) / s)],
                            [3.0 + 0.32, 18.0 + 0.06], [refs["jfk.flac"]["reference"],
                             refs["speechbrain/spk1_snt1.wav"]["reference"]])


MakeCtx = Callable[..., Context]


@pytest.fixture
def asr_ctx(ctx: Context, asr_resources: dict[str, Any], load_asr: Callable[[str], Any]
            ) -> MakeCtx:
    """asr_ctx(engine, **section_overrides) → a Context sharing the session's loaded models."""

    def make(engine: str = "openai-whisper", **overrides: dict[str, Any]) -> Context:
        settings = {"transcribe": {"engine": engine, **overrides.pop("transcribe", {})},
                    **overrides}
        ws = open_workspace(ctx.workspace.root, overrides=settings)
        load_asr(engine, ws.settings.transcribe.model, ws.settings.transcribe.compute_type)
        return Context(workspace=ws, ffmpeg=ctx.ffmpeg, resources=asr_resources,
                       state=ctx.state)

    return make


MakeJob = Callable[..., Job]


@pytest.fixture
def make_job(ffmpeg: str) -> MakeJob:
    """make_job(ctx, media, key="master_audio", glossary=[...]) → a Job with that artifact.

    The media is stored as FLAC in the job folder, as the earlier stages would leave it.
    """
    counter = iter(range(1, 1000))

    def make(ctx: Context, media: Path, key: str = "master_audio", *,
             glossary: list[str] | None = None, title: str = "Test episode",
             show: str = "learning-weekly", measurements: dict[str, Any] | None = None) -> Job:
        job_id = f"job{next(counter):03d}"
        folder = ctx.workspace.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        flac = folder / f"{key}.flac"
        subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i",
                        str(media), "-map", "0:a:0", "-c:a", "flac", str(flac)], check=True)
        rel = ctx.workspace.rel(flac)
        return Job(id=job_id, sha256="0" * 64, show=show, title=title,
                   slug=f"{slugify(title)}-{job_id}", source=media.name, original=rel,
                   probe=probe(flac), metadata=EpisodeMetadata(glossary=glossary or []),
                   files={key: rel}, measurements=dict(measurements or {}))

    return make


@pytest.fixture(scope="session")
def webvtt_validate() -> Callable[[Path], dict[str, Any]]:
    """Validate a .vtt file with npm `webvtt-parser`; returns {"errors": [...], "cues": [...]}.

    Installs the parser into tests/.node/ on first use (a missing node/npm is a failure).
    """
    node = shutil.which("node")
    if not node:
        pytest.fail("Node.js is needed for the WebVTT validator; install Node.js 18+")
    modules = node_modules()

    def validate(path: Path) -> dict[str, Any]:
        proc = subprocess.run([node, str(VALIDATOR_JS), str(path)], capture_output=True,
                              text=True, check=False,
                              env={"NODE_PATH": str(modules)})
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    return validate


def normalise_text(text: str) -> list[str]:
    """Lowercase words without punctuation, for comparing transcripts with references."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance / reference length."""
    ref = normalise_text(reference)
    return word_edit_distance(ref, normalise_text(hypothesis)) / max(len(ref), 1)


def references(shared_audio: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_audio / "references.json").read_text())
    return data
