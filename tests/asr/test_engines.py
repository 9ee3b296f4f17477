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


def test_openai_whisper_stops_a_beam_whose_text_loops() -> None:
    import torch

    from pipeline.asr.engines import _RepetitionStop

    eot, ts = 50256, 50363  # tiny.en's end-of-text and first timestamp token
    stop = _RepetitionStop(sample_begin=2, eot=eot, timestamp_begin=ts)
    loop = [1, 2] + [ts, 11, 12, 13, ts + 50] * 3  # a phrase thrice, timestamps between
    speech = [1, 2, ts, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, ts + 50, ts + 50]
    tokens = torch.tensor([loop, speech])
    logits = torch.zeros(2, ts + 100)
    stop.apply(logits, tokens)
    assert int(torch.argmax(logits[0])) == eot and torch.isinf(logits[0, 11])
    assert torch.all(logits[1] == 0)  # the other beam is left alone
    assert stop.fired == 1 and stop.steps == 1


def test_faster_whisper_stops_reading_once_the_words_loop() -> None:
    from faster_whisper.transcribe import Segment as FwSegment
    from faster_whisper.transcribe import Word as FwWord

    from pipeline.asr.engines import _read_until_loop

    pulled = 0

    def decoder() -> Any:  # what faster-whisper's lazy generator yields, looping forever
        nonlocal pulled
        texts = ["Welcome to the briefing."] + ["Thank you very much for your time."] * 1000
        for i, text in enumerate(texts):
            pulled += 1
            words = [FwWord(start=i + j * 0.1, end=i + j * 0.1 + 0.1, word=f" {w}",
                            probability=0.9) for j, w in enumerate(text.split())]
            yield FwSegment(id=i, seek=0, start=float(i), end=i + 1.0, text=f" {text}",
                            tokens=list(range(9)), avg_logprob=-0.2, compression_ratio=1.2,
                            no_speech_prob=0.01, words=words, temperature=0.0)

    segments, stops = _read_until_loop(decoder(), budget=None)
    assert pulled == 4 and len(segments) == 4  # the third copy ends it
    assert stops["repetition_stops"] == 1 and segments[0].text == "Welcome to the briefing."
    pulled = 0
    segments, stops = _read_until_loop(decoder(), budget=20)
    assert pulled == 3 and stops["budget_stops"] == 1  # 9 tokens each: over 20 at the third


def test_token_budget_ends_decoding_early(load_asr: Callable[[str], Any], ffmpeg: str,
                                          shared_audio: Path) -> None:
    """Once the budget is spent, whisper is told "no speech" and skips the rest."""
    audio = decode_16k_mono(ffmpeg, shared_audio / "longform_concat_16k.flac")[:75 * SAMPLE_RATE]
    transcript = load_asr("openai-whisper").transcribe(audio, AsrOptions(token_budget=40))
    assert transcript.info["budget_stops"] >= 1
    assert transcript.words and transcript.words[-1].end <= 31.0  # only the first window


def test_openai_whisper_uses_its_thread_share_in_the_calling_thread(
        tmp_path: Path, jfk: np.ndarray) -> None:
    import threading

    import torch

    engine = load_engine("openai-whisper", "tiny.en", tmp_path / "models", threads=1)
    seen: list[int] = []

    def work() -> None:  # a runner worker thread: torch's thread count is per thread
        engine.transcribe(jfk[:3 * SAMPLE_RATE], AsrOptions(beam_size=1))
        seen.append(torch.get_num_threads())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [1]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_remainder_after_the_last_word_is_not_decoded(
        engine: str, load_asr: Callable[[str], Any], ffmpeg: str, shared_audio: Path) -> None:
    """After "What joy there is in living." whisper decodes the last 0.3 s on its own and
    both engines invent "Thank you for watching." there: that window is skipped."""
    audio = decode_16k_mono(ffmpeg, shared_audio / "speechbrain" / "spk2_snt2.wav")
    transcript = load_asr(engine).transcribe(audio, AsrOptions())
    assert normalise_text(transcript.text) == normalise_text("What joy there is in living.")
    assert transcript.info["remainder_skips"] == 1


def test_window_content_is_told_from_whispers_zero_padding() -> None:
    import torch

    from pipeline.asr.engines import _content_frames, _is_remainder

    mel = np.zeros((80, 3000), np.float32)
    mel[:, :176] = -0.6  # 1.76 s of audio (digital silence is -0.6..-1 after scaling)
    mel[3, 150] = 0.0  # one zero bin inside the audio changes nothing
    assert _content_frames(mel) == 176 == _content_frames(torch.from_numpy(mel)[None])
    assert _is_remainder(30, frames=176) and not _is_remainder(176, frames=176)
    assert not _is_remainder(150, frames=900)  # 1.5 s left: decoded
