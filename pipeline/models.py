"""The typed job passed between stages and stored in the state database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.media import Probe
from pipeline.sidecar import EpisodeMetadata


class Status(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    FAILED = "failed"
    AWAITING_REVIEW = "awaiting-review"
    PUBLISHED = "published"
    #: Taken out of the feeds by `learncast unpublish`; feeds skip it, workers never claim it.
    UNPUBLISHED = "unpublished"


@dataclass(frozen=True)
class Job:
    """One episode on its way through the stages.

    `files` maps artifact names (`source_audio`, `audio`, `video`, `vtt`, ...) to paths relative
    to the workspace; `measurements` holds figures stages record (loudness, durations, QA);
    `objects` maps artifact names to what the storage backend holds for them (key, url, size,
    sha256, content_type), so feeds point only at objects confirmed stored.
    Stages return an updated copy (`job.with_file(...)`), never mutate.
    """

    id: str
    sha256: str
    show: str
    title: str
    slug: str
    source: str
    original: str
    probe: Probe | None
    metadata: EpisodeMetadata
    status: Status = Status.QUEUED
    stage: str | None = None
    error: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def kind(self) -> str:
        return self.probe.kind if self.probe else "unknown"

    def with_file(self, name: str, path: Path | str) -> Job:
        return dataclasses.replace(self, files={**self.files, name: str(path)})

    def with_measurements(self, **figures: Any) -> Job:
        return dataclasses.replace(self, measurements={**self.measurements, **figures})

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)
