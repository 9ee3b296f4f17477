"""Settings: one schema, layered sources, validated once at start-up.

Precedence (lowest first): the defaults in this schema < `config/learncast.toml` in the
workspace < `LEARNCAST_<SECTION>__<KEY>` environment variables < CLI flags. Every key carries
a description; `learncast init` writes the documented config from this schema, so the
documentation cannot drift from what is accepted. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError

CONFIG_RELPATH = Path("config") / "learncast.toml"
ENV_PREFIX = "LEARNCAST_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsSettings(Section):
    """Workspace folders, relative to the workspace (absolute paths are allowed)."""

    inbox: str = Field("inbox", description="Producers drop recordings (and sidecars) here.")
    archive: str = Field("archive", description="Originals, kept byte-for-byte, never deleted.")
    work: str = Field("work", description="Intermediate files, one folder per episode.")
    failed: str = Field("failed", description="Rejected recordings with <name>.error.txt.")
    transcripts: str = Field("transcripts", description="Captions and transcripts per show.")
    feeds: str = Field("feeds", description="Generated RSS feeds per show.")
    public: str = Field("public", description="Root of the local storage backend.")
    state: str = Field("state/learncast.db", description="The SQLite state database.")


class IngestSettings(Section):
    """How the inbox is watched and what recordings are accepted."""

    settle_seconds: float = Field(
        2.0, ge=0, le=3600,
        description="A file is taken only once its size and mtime stayed the same for this long.",
    )
    wait_seconds: float = Field(
        120.0, ge=0,
        description="`learncast run` waits up to this long for files still being written; "
        "files still changing after that are left for the next run.",
    )
    min_duration_s: float = Field(1.0, ge=0, description="Shorter recordings are rejected.")
    max_duration_s: float = Field(
        4 * 3600.0, gt=0, description="Longer recordings are rejected (seconds)."
    )


class RunnerSettings(Section):
    """Retries and polling."""

    retry_attempts: int = Field(
        4, ge=1, le=20, description="Attempts per stage for transient faults (storage timeouts)."
    )
    retry_backoff_s: float = Field(
        2.0, ge=0, description="First retry delay; doubles on each attempt."
    )
    retry_backoff_max_s: float = Field(60.0, ge=0, description="Cap on the retry delay.")
    poll_seconds: float = Field(5.0, gt=0, description="How often `learncast watch` looks.")


class FfmpegSettings(Section):
    """Which ffmpeg binary to run."""

    path: str = Field(
        "", description="Path to ffmpeg; empty = `ffmpeg` on PATH, else the bundled one."
    )


class ShowSettings(Section):
    """One podcast/video show. Episodes choose a show by id in their sidecar."""

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Short ASCII id used in paths, object keys and sidecars.",
    )
    title: str = Field(min_length=1, max_length=255, description="Show title in podcast apps.")
    description: str = Field("", description="Show description in podcast apps.")
    author: str = Field("", description="Author/owner name shown in podcast apps.")
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
                          description="BCP 47 language of the episodes (e.g. en, en-GB).")
    artwork: str = Field("assets/artwork.png", description="Square show artwork, JPEG or PNG, "
                         "1400-3000 px (workspace-relative path).")
    intro: str = Field("", description="Optional intro bumper (audio or video file in assets/).")
    outro: str = Field("", description="Optional outro bumper (audio or video file in assets/).")
    glossary: list[str] = Field(
        default_factory=list, max_length=500,
        description="Names and terms of this show (products, people, acronyms): fed to the "
        "speech recogniser and used to correct near-miss spellings; sidecars can add more.",
    )


class TranscribeSettings(Section):
    """Speech recognition (whisper): engine, model and quality guards."""

    engine: Literal["openai-whisper", "faster-whisper"] = Field(
        "openai-whisper", description="ASR engine; faster-whisper is about 3x faster on CPU.")
    model: str = Field(
        "tiny.en", min_length=1,
        description="Whisper model name (tiny.en, base.en, small, ...) or a path to a .pt "
        "checkpoint / CTranslate2 model folder. tiny.en works offline (bundled).",
    )
    models_dir: str = Field(
        "models", description="Converted and local models (workspace-relative).")
    compute_type: str = Field(
        "int8", description="faster-whisper weight type: int8, float32 or default.")
    threads: int = Field(0, ge=0, le=256, description="CPU threads; 0 = all cores.")
    language: str = Field(
        "", description="Spoken language (ISO 639-1); empty = the show's language. "
        "English-only models (*.en) always use en.",
    )
    beam_size: int = Field(5, ge=1, le=20, description="Beam search width; 1 = greedy (faster).")
    no_speech_threshold: float = Field(
        0.6, ge=0, le=1, description="Segments more likely silence than this (and with low "
        "confidence) are dropped.")
    logprob_threshold: float = Field(
        -1.0, le=0, description="Average log-probability below which a segment counts as "
        "low-confidence for the no-speech guard.")
    compression_ratio_threshold: float = Field(
        2.4, gt=1, description="Segments whose text compresses better than this (loops, "
        "repeated phrases) are dropped.")
    silence_dbfs: float = Field(
        -60.0, le=0, description="Recordings quieter than this overall are treated as silent: "
        "empty transcript plus a warning, no recognition run.")
    glossary_similarity: float = Field(
        0.8, gt=0, le=1, description="How close (0-1) a recognised word must be to a glossary "
        "term to be respelled as that term.")


class CaptionSettings(Section):
    """Captions and transcripts: style profile and QA thresholds."""

    profile: Literal["learncast", "netflix-en", "bbc", "dcmp-edu"] = Field(
        "learncast", description="Caption style profile (line length, reading speed, timing).")
    low_confidence: float = Field(
        0.5, ge=0, le=1, description="Words recognised with a probability below this are "
        "listed in the QA report for review.")


class StorageSettings(Section):
    """Where published media, captions and feeds go."""

    backend: Literal["local"] = Field("local", description="Storage backend.")
    public_base_url: str = Field(
        "http://localhost:8080",
        description="Base URL learners' apps fetch from; every URL in the feeds starts with it.",
    )


def _default_shows() -> list[ShowSettings]:
    return [ShowSettings(id="learning-weekly", title="Learning Weekly",
                         description="Weekly briefings and micro-learning from the L&D team.",
                         author="L&D Team")]


class Settings(Section):
    """All of Learncast's configuration."""

    paths: PathsSettings = PathsSettings()
    ingest: IngestSettings = IngestSettings()
    runner: RunnerSettings = RunnerSettings()
    ffmpeg: FfmpegSettings = FfmpegSettings()
    storage: StorageSettings = StorageSettings()
    transcribe: TranscribeSettings = TranscribeSettings()
    captions: CaptionSettings = CaptionSettings()
    default_show: str = Field("", description="Show for recordings whose sidecar names none; "
                              "empty = the first show.")
    shows: list[ShowSettings] = Field(default_factory=_default_shows, min_length=1)

    @model_validator(mode="after")
    def _check_shows(self) -> Settings:
        ids = [s.id for s in self.shows]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"show ids must be unique; repeated: {', '.join(dupes)}")
        if self.default_show and self.default_show not in ids:
            raise ValueError(
                f"default_show {self.default_show!r} is not a configured show "
                f"(configured: {', '.join(ids)})"
            )
        return self

    def show(self, show_id: str | None) -> ShowSettings:
        wanted = show_id or self.default_show or self.shows[0].id
        for s in self.shows:
            if s.id == wanted:
                return s
        raise KeyError(wanted)

    @property
    def show_ids(self) -> list[str]:
        return [s.id for s in self.shows]


def load_settings(
    workspace: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge every layer and validate once; errors name the file, key, value and what is allowed."""
    path = workspace / CONFIG_RELPATH
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path.is_file():
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    env_data = _from_env(os.environ if env is None else env)
    if env_data:
        source += " + LEARNCAST_* environment"
    merged = _deep_merge(_deep_merge(data, env_data), dict(overrides or {}))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, merged)) from None


def format_validation_error(source: str, exc: ValidationError, data: Any = None) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1], data)
            lines.append(f"  - unknown key '{key}'; allowed here: {', '.join(allowed)}")
        elif err["type"] == "missing":
            lines.append(f"  - '{key}' is required")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            lines.append(f"  - '{key}'{shown}: {err['msg']}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...], data: Any) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidate = inner[0] if inner else annotation
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
        else:
            return []
    return sorted(model.model_fields)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """`LEARNCAST_INGEST__SETTLE_SECONDS=1` → {"ingest": {"settle_seconds": 1}}.

    Values are read as TOML when they parse (numbers, booleans, arrays), else as strings.
    `LEARNCAST_WORKSPACE` is not a setting and is skipped.
    """
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --- the documented config file, generated from the schema -------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _describe(field: Any) -> str:
    text = field.description or ""
    allowed = getattr(field.annotation, "__args__", None)
    if getattr(field.annotation, "__origin__", None) is Literal and allowed:
        text += f" One of: {', '.join(map(str, allowed))}."
    return text


def _section_lines(model: BaseModel) -> list[str]:
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel) or (
            isinstance(value, list) and value and isinstance(value[0], BaseModel)
        ):
            continue
        desc = _describe(field)
        if desc:
            lines.append(f"# {desc}")
        lines.append(f"{name} = {_toml_value(value)}")
    return lines


def render_config(settings: Settings | None = None) -> str:
    """A complete, commented `learncast.toml` for `settings` (defaults when None)."""
    settings = settings or Settings()
    out = [
        "# Learncast configuration. Every key is listed with its default and meaning.",
        "# Environment variables override it: LEARNCAST_<SECTION>__<KEY>=value",
        "# (e.g. LEARNCAST_INGEST__SETTLE_SECONDS=5). Unknown keys are errors.",
        "",
    ]
    out += _section_lines(settings)
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            out += ["", f"[{name}]"]
            if type(value).__doc__:
                out.append(f"# {type(value).__doc__.strip().splitlines()[0]}")
            out += _section_lines(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            doc = (field.annotation.__args__[0].__doc__ or "").strip()  # type: ignore[union-attr]
            for item in value:
                out += ["", f"[[{name}]]"]
                if doc:
                    out.append(f"# {doc.splitlines()[0]}")
                out += _section_lines(item)
    return "\n".join(out) + "\n"
