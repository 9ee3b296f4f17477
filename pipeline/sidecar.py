"""The optional episode sidecar (`<stem>.yaml|.yml|.json`) dropped beside a recording."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import InputError

SIDECAR_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SIDECAR_BYTES = 256 * 1024
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_clock(value: Any) -> float:
    """Seconds from a number or `MM:SS` / `HH:MM:SS(.mmm)`."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or HH:MM:SS")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _CLOCK.match(value.strip())):
        hours, minutes, secs = m.groups()
        seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not seconds or HH:MM:SS") from None
    else:
        raise ValueError("expected seconds or HH:MM:SS")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


class Chapter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(description="Start time: seconds or HH:MM:SS.")
    title: str = Field(min_length=1, max_length=200)

    @field_validator("start", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> float:
        return parse_clock(value)


class SoundbiteSpec(BaseModel):
    """A soundbite the producer chose: start in the recording as dropped, length, title."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(description="Start time: seconds or HH:MM:SS.")
    duration: float = Field(gt=0, le=300, description="Length in seconds.")
    title: str | None = Field(None, min_length=1, max_length=128)

    @field_validator("start", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> float:
        return parse_clock(value)

    @field_validator("duration", mode="before")
    @classmethod
    def _length(cls, value: Any) -> float:
        return parse_clock(value)


class EpisodeMetadata(BaseModel):
    """Everything a producer can say about an episode; all optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = None
    show: str | None = None
    season: int | None = Field(None, ge=1, le=9999)
    episode: int | None = Field(None, ge=1, le=99999)
    episode_type: Literal["full", "trailer", "bonus"] = "full"
    publish_date: dt.datetime | None = None
    explicit: bool = False
    glossary: list[str] = Field(default_factory=list, max_length=500)
    chapters: list[Chapter] = Field(default_factory=list, max_length=500)
    soundbites: list[SoundbiteSpec] = Field(default_factory=list, max_length=3)

    @field_validator("description")
    @classmethod
    def _description_size(cls, value: str | None) -> str | None:
        # Apple's limit for an episode description; checked here so the producer hears of it
        # at drop time rather than at publish time.
        if value is not None and len(value.encode("utf-8")) > 4000:
            raise ValueError(f"is {len(value.encode('utf-8'))} bytes; at most 4000 are allowed")
        return value

    @field_validator("publish_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return value

    @field_validator("publish_date")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    @field_validator("glossary")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        terms = [t.strip() for t in value if t.strip()]
        if any(len(t) > 100 for t in terms):
            raise ValueError("terms must be at most 100 characters")
        return terms

    @model_validator(mode="after")
    def _chapter_order(self) -> EpisodeMetadata:
        starts = [c.start for c in self.chapters]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("chapters must have strictly increasing start times")
        return self


def find_sidecar(media: Path) -> Path | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = media.with_name(media.stem + suffix)
        if candidate != media and candidate.is_file():
            return candidate
    return None


def load_sidecar(path: Path | None) -> EpisodeMetadata:
    """Parse and validate; InputError names the sidecar, the field and what is allowed."""
    if path is None:
        return EpisodeMetadata()
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise InputError(f"sidecar {path.name} is {size} bytes; at most {MAX_SIDECAR_BYTES} are "
                         "accepted. Shorten the description and drop both files again")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise InputError(f"sidecar {path.name} is not valid {kind}: {exc}. Fix it and drop the "
                         "recording and the sidecar into the inbox again") from exc
    if data is None:
        return EpisodeMetadata()
    if not isinstance(data, dict):
        raise InputError(f"sidecar {path.name} must be a mapping of fields (title: ..., "
                         f"show: ...), not a {type(data).__name__}")
    try:
        return EpisodeMetadata.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(sidecar)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(EpisodeMetadata.model_fields)
                problems.append(f"unknown field '{field}' (allowed: {allowed})")
            else:
                got = err.get("input")
                shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
                problems.append(f"field '{field}': {err['msg']}{shown}")
        raise InputError(f"sidecar {path.name} is invalid: " + "; ".join(problems)
                         + ". Fix it and drop the recording and the sidecar into the inbox again"
                         ) from None
