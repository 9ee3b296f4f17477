"""Speaker diarization on real voices: conversations built from the shared clips with known
turns (bench/diarize.py says how), single voices, silence, and the parts on their own.

Bounds here are looser than the bench's goals (DER ≤ 15 %, changes within 1 s), so that a
change of numpy or torch does not fail CI over a percent; the bench reports the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.diarize import build_conversation, hyp_turns, score
from pipeline.asr import diarize as dz
from pipeline.asr.audio import decode_16k_mono, stream_16k_mono
from pipeline.asr.types import Word


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    """One voice encoder for the module, as a worker keeps one."""
    return {}


@pytest.mark.parametrize("voices", [["spk1", "spk2"], ["spk1", "spk2", "osr"]],
                         ids=["two voices", "three voices"])
def test_conversations_with_known_turns(voices: list[str], ffmpeg: str, tmp_path: Path,
                                        resources: dict[str, Any]) -> None:
    path, ref = build_conversation(ffmpeg, voices, tmp_path / "talk.wav", seed=15,
                                   rounds=2)
    duration = ref[-1].end + 0.5
    result = dz.diarize(stream_16k_mono(ffmpeg, path), resources=resources)
    assert result.speakers == len(voices)
    assert result.count_source == "estimated"
    figures = score(ref, hyp_turns(result), duration)
    assert figures["der"] <= 0.20, figures
    assert figures["der_collar_0_25"] <= 0.15, figures
    assert figures["missed_changes"] == 0 and figures["max_change_error_s"] <= 1.0, figures
    # speakers are numbered by first appearance
    assert list(dict.fromkeys(t.speaker for t in result.turns)) == list(range(len(voices)))


def test_a_given_count_is_kept(ffmpeg: str, tmp_path: Path,
                               resources: dict[str, Any]) -> None:
    """Changes without any pause: the producer's count holds, the voices still separate."""
    path, ref = build_conversation(ffmpeg, ["spk1", "spk2"], tmp_path / "talk.wav",
                                   seed=16, pauses=False, rounds=2)
    result = dz.diarize(stream_16k_mono(ffmpeg, path), settings=dz.Settings(speakers=2),
                        resources=resources)
    assert result.speakers == 2 and result.count_source == "given"
    figures = score(ref, hyp_turns(result), ref[-1].end + 0.5)
    assert figures["der"] <= 0.25, figures


@pytest.mark.parametrize("name", ["jfk.flac", "OSR_us_000_0034_8k.wav",
                                  "speechbrain/LJ050-0131.wav"])
def test_a_single_voice_is_one_speaker(name: str, shared_audio: Path, ffmpeg: str,
                                       resources: dict[str, Any]) -> None:
    result = dz.diarize(stream_16k_mono(ffmpeg, shared_audio / name), resources=resources)
    assert result.speakers == 1
    assert {t.speaker for t in result.turns} == {0}
    assert result.speech_s > 0.5 * result.duration_s * 0.5


@pytest.mark.parametrize(("voice", "rounds"), [("jfk", 6), ("spk2", 5)])
def test_a_longer_single_voice_is_one_speaker(voice: str, rounds: int, ffmpeg: str,
                                              tmp_path: Path,
                                              resources: dict[str, Any]) -> None:
    """40-60 s of one voice (a noisy speech; a clean one): no second speaker appears."""
    path, _ = build_conversation(ffmpeg, [voice], tmp_path / "one.wav", seed=3,
                                 rounds=rounds)
    result = dz.diarize(stream_16k_mono(ffmpeg, path), resources=resources)
    assert result.duration_s > 40
    assert result.speakers == 1, result.figures


def test_silence_costs_no_encoder(ffmpeg: str, make_media: Any, tmp_path: Path) -> None:
    tone = make_media(tmp_path / "room.wav", "-f", "lavfi", "-i",
                      "anoisesrc=color=pink:amplitude=0.001:duration=6")
    resources: dict[str, Any] = {}
    result = dz.diarize(stream_16k_mono(ffmpeg, tone), resources=resources)
    assert result.speakers == 0 and result.turns == () and result.count_source == "no speech"
    assert "voice_encoder" not in resources  # never loaded
    assert result.duration_s == pytest.approx(6.0, abs=0.01)


def test_features_are_the_same_however_the_audio_arrives(shared_audio: Path,
                                                         ffmpeg: str) -> None:
    """Streaming in blocks (as from ffmpeg) gives the mel frames of the whole clip at once."""
    samples = decode_16k_mono(ffmpeg, shared_audio / "jfk.flac")
    whole = dz.Features()
    whole.add(samples)
    mels, probs = whole.finish()
    streamed = dz.Features()
    for k in range(0, len(samples), 12_345):
        streamed.add(samples[k:k + 12_345])
    mels2, _ = streamed.finish()
    assert mels.shape == mels2.shape == (len(samples) // dz.HOP, dz.N_MELS)
    np.testing.assert_allclose(mels, mels2, rtol=1e-4, atol=1e-6)
    assert len(probs) == len(mels)


def test_mel_filterbank_is_slaney_normalised() -> None:
    """librosa's default mel (Slaney scale and area): what the encoder was trained on."""
    bank = dz.mel_filterbank()
    assert bank.shape == (40, 201) and (bank >= 0).all()
    hz_per_bin = 8000 / 200
    areas = bank.sum(axis=1) * hz_per_bin
    np.testing.assert_allclose(areas[5:], 1.0, rtol=0.05)  # unit area (narrow ones quantise)
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > 180
    # linear below 1 kHz: the first bands' centres are evenly spaced
    centres = dz._mel_to_hz(np.linspace(0, dz._hz_to_mel(np.array([8000.0]))[0], 42))[1:-1]
    assert np.diff(centres[:10]) == pytest.approx([centres[1] - centres[0]] * 9)


def test_clustering_stops_at_the_threshold_or_the_count() -> None:
    rng = np.random.default_rng(1)
    axes = np.eye(8)[:3]
    points = np.concatenate([a + 0.15 * rng.standard_normal((10, 8)) for a in axes])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    weights = np.full(len(points), 1.5)
    labels, figures = dz.cluster(points, weights, threshold=0.5, ratio=0.9)
    assert len(set(labels)) == 3
    assert [len(set(labels[k * 10:(k + 1) * 10])) for k in range(3)] == [1, 1, 1]
    assert figures["between"] < 0.5
    two, _ = dz.cluster(points, weights, threshold=0.5, speakers=2)
    assert len(set(two)) == 2
    capped, _ = dz.cluster(points, weights, threshold=0.99, ratio=0.99, max_speakers=2)
    assert len(set(capped)) == 2


def test_a_short_odd_voice_is_folded_into_its_nearest() -> None:
    embeddings = np.array([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0.6, 0.8, 0]], float)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = dz.fold_small(np.array([0, 0, 1, 2]), embeddings, np.array([5, 5, 4, 1.0]),
                           min_s=2.0)
    assert len(set(labels)) == 2 and labels[3] == labels[2]


def test_words_take_the_speaker_of_their_turn() -> None:
    result = dz.Diarization(2, (dz.Turn(0, 2, 0), dz.Turn(2.3, 4, 1), dz.Turn(4.5, 6, 0)),
                            6.0, 5.2)
    words = [Word("Hi", 0.1, 0.4, 0.9), Word("there.", 0.5, 2.1, 0.9),
             Word("Hello", 2.2, 2.6, 0.9), Word("back.", 2.6, 3.0, 0.9),
             Word("So", 4.2, 4.4, 0.9), Word("then.", 4.6, 5.0, 0.9)]
    labelled = dz.label_words(words, result, dz.speaker_names(2, ["Ana"]))
    assert [w.speaker for w in labelled] == ["Ana", "Ana", "Speaker 2", "Speaker 2",
                                             "Ana", "Ana"]  # "So" is in a gap: nearest turn
    assert dz.speaker_changes(labelled) == [2.2, 4.2]
    one = dz.Diarization(1, (dz.Turn(0, 6, 0),), 6.0, 6.0)
    assert all(w.speaker is None for w in dz.label_words(words, one, ["Ana"]))


def test_word_speaker_round_trips_and_stays_optional() -> None:
    word = Word("Hi", 0.1, 0.4, 0.9, speaker="Ana")
    assert Word.from_dict(word.to_dict()) == word
    plain = Word("Hi", 0.1, 0.4, 0.9)
    assert "speaker" not in plain.to_dict()
    assert Word.from_dict({"word": "Hi", "start": 0.1, "end": 0.4, "probability": 0.9}) == plain


def test_config_defaults_are_the_tuned_ones() -> None:
    """The bench tunes the module's constants; the shipped config must be the same values."""
    from pipeline.config import SpeakerSettings

    shipped = SpeakerSettings()
    assert (shipped.threshold, shipped.ratio, shipped.min_speaker_s, shipped.max_speakers) == (
        dz.THRESHOLD, dz.RATIO, dz.MIN_SPEAKER_S, dz.MAX_SPEAKERS)
    assert dz.Settings() == dz.Settings(threshold=shipped.threshold, ratio=shipped.ratio,
                                        min_speaker_s=shipped.min_speaker_s,
                                        max_speakers=shipped.max_speakers)
