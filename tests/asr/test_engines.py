"""Both engines on real speech: same interface, same invariants, bundled model offline."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.asr.audio import SAMPLE_RATE, decode_16k_mono
from pipeline.asr.engines import AsrOptions, engine_key, get_engine, load_engine
from pipeline.asr.models import resolve_faster
from pipeline.errors import ConfigError
from tests.asr.fixtures import normalise_text, references

ENGINES = ["openai-whisper", "faster-whisper"]


@pytest.fixture(scope="module")
def jfk(ffmpeg: str, shared_audio: Path) -> np.ndarray:
    return decode_16k_mono(ffmpeg, shared_audio / "jfk.flac")


def test_decode_gives_16k_mono_float32(jfk: np.ndarray) -> None:
    assert jfk.dtype == np.float32 and jfk.ndim == 1
    assert len(jfk) / SAMPLE_RATE == pytest.approx(11.0, abs=0.05)
    assert 0.01 < float(np.abs(jfk).max()) < 1.5  # resampling may overshoot full scale


@pytest.mark.parametrize("engine", ENGINES)
def test_jfk_text_equals_reference(engine: str, load_asr: Callable[[str], Any],
                                   jfk: np.ndarray, shared_audio: Path) -> None:
    asr = load_asr(engine)
    assert asr.model.source == "bundled"
    transcript = asr.transcribe(jfk, AsrOptions())
    reference = references(shared_audio)["jfk.flac"]["reference"]
    assert normalise_text(transcript.text) == normalise_text(reference)


@pytest.mark.parametrize("engine", ENGINES)
def test_word_timestamps_increase_and_lie_inside_the_audio(
        engine: str, load_asr: Callable[[str], Any], jfk: np.ndarray) -> None:
    transcript = load_asr(engine).transcribe(jfk, AsrOptions())
    words = transcript.words
    assert len(words) == 22
    duration = len(jfk) / SAMPLE_RATE
    for prev, word in itertools.pairwise(words):
        assert prev.start <= word.start and prev.end <= word.end + 1e-6
        assert prev.end <= word.start + 1e-6
    for word in words:
        assert 0.0 <= word.start <= word.end <= duration + 0.01
        assert 0.0 <= word.probability <= 1.0
    # JFK's famous pause: "ask not" comes after 3 s and "country." ends past 10 s.
    assert words[-1].end > 10.0 and words[5].start > 2.0


def test_engines_agree_on_words(load_asr: Callable[[str], Any], jfk: np.ndarray) -> None:
    ours = load_asr("openai-whisper").transcribe(jfk, AsrOptions()).words
    fast = load_asr("faster-whisper").transcribe(jfk, AsrOptions()).words
    assert [normalise_text(w.text) for w in ours] == [normalise_text(w.text) for w in fast]
    # Same alignment heads, so word times agree closely between engines.
    diffs = [abs(a.start - b.start) for a, b in zip(ours, fast, strict=True)]
    assert float(np.median(diffs)) < 0.15


def test_faster_whisper_rejects_a_whisper_checkpoint(tmp_path: Path) -> None:
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"not really")
    with pytest.raises(ConfigError, match="CTranslate2 model folder"):
        resolve_faster(str(pt), tmp_path)


def test_missing_model_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_engine("openai-whisper", str(tmp_path / "nope" / "model.pt"), tmp_path)


def test_unknown_engine_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="openai-whisper, faster-whisper"):
        load_engine("vosk", "tiny.en", tmp_path)


def test_get_engine_loads_each_model_once_per_process(tmp_path: Path) -> None:
    resources: dict[str, Any] = {}
    first = get_engine(resources, "faster-whisper", "tiny.en", tmp_path)
    again = get_engine(resources, "faster-whisper", "tiny.en", tmp_path)
    assert first is again and list(resources) == [engine_key("faster-whisper", "tiny.en",
                                                             "int8")]
