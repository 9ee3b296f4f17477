"""The typed job passed between stages and stored in the state database.

A job carries four kinds of data, each typed: `files` (artifact → path), `objects` (artifact →
what storage holds for it), `results` (one record per stage that decides something later
stages or the feeds rely on) and `measurements` (figures only: durations, counts, rates, for
`status --json`, benchmarks and the QA pages). When two modules need the same fact, it is a
field of a result, never a dict key read in two places.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.artifacts import Artifact, Timeline
from pipeline.audio.loudness import Loudness
from pipeline.media import Probe
from pipeline.sidecar import Chapter, EpisodeMetadata


class Status(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    FAILED = "failed"
    AWAITING_REVIEW = "awaiting-review"
    PUBLISHED = "published"
    #: Taken out of the feeds by `learncast unpublish`; feeds skip it, workers never claim it.
    UNPUBLISHED = "unpublished"


class Record(BaseModel):
    """Base of the per-stage results: immutable, validated when read back from the database."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class TrimResult(Record):
    """What trim measured and how it cut (the kept stretches are in the Timeline)."""

    floor_db: float
    threshold_db: float
    sound_found: bool
    removed_pauses: list[tuple[float, float]] = Field(default_factory=list)
    video_path: str | None = None  # unchanged, stream-copy or re-encode
    keyframe_snap_s: float | None = None
    video_start_offset_s: float | None = None


class LoudnessResult(Record):
    """The normalise stage's plan and figures, plus the encoded deliverables' (encode)."""

    profile: str
    target_i: float
    target_tp: float
    tolerance_lu: float
    before: Loudness
    master: Loudness
    gain_db: float
    limited: bool
    ceiling_db: float
    corrections: int = 0
    sample_rate: int
    leveler: bool = False  # the speech leveler's gain curve was applied
    final: dict[str, Loudness] = Field(default_factory=dict)  # by artifact: audio, video


class EncodeResult(Record):
    bumpers: list[str] = Field(default_factory=list)
    channels: int
    video_path: str | None = None  # stream-copy, re-encode or re-encode (bumpers)
    #: Gain added to a rendition encoded once more because the lossy encode moved it off
    #: target (by deliverable: audio, video); absent when the first encode was on target.
    trim_gain_db: dict[str, float] = Field(default_factory=dict)


class TranscriptionResult(Record):
    engine: str
    model: str
    model_source: str
    language: str


class SpeakersResult(Record):
    """Who speaks: the names in order of first appearance (one name or none: a single voice,
    so captions carry no labels) and where the count came from."""

    count: int
    names: list[str] = Field(default_factory=list)
    #: estimated, sidecar (the producer's list), single (one name given), no speech, disabled
    source: str = "estimated"
    turns: int = 0


class CaptionResult(Record):
    """Which caption revision is current: 1 is the recogniser's first; each reviewer save, and
    each new run of the caption stage, adds one (an approval covers one revision)."""

    profile: str
    language: str
    revision: int = 1


class ChapterMark(Record):
    """A chapter in deliverable time: every rendition (ID3, MP4, JSON) writes exactly these."""

    start: float
    end: float
    title: str
    toc: bool = True  # False: a navigation point only (the intro), not listed as a chapter
    #: Found in the transcript's topic shifts and not yet accepted by a reviewer.
    suggested: bool = False


class ChapterReview(Record):
    """Chapters a reviewer accepted or edited on the review page. Kept in recording time, like
    the sidecar's, so the chapters stage places them through the Timeline the same way."""

    chapters: list[Chapter]
    reviewer: str
    at: str


class SoundbiteResult(Record):
    """One soundbite: where it lies in the deliverables (what `podcast:soundbite` says) and
    how its clip was matched (`loudness` re-measured on the exported MP3)."""

    start: float  # deliverable time
    duration: float
    title: str
    origin: str  # sidecar or transcript
    terms: list[str] = Field(default_factory=list)  # the key terms it was chosen for
    loudness: Loudness | None = None
    gain_db: float = 0.0
    limited: bool = False  # the true peak allowed less gain than the target needed


class AudiogramResult(Record):
    """How the audiogram was drawn: size (the feeds' alternateEnclosure height), frame rate
    and the caption text size (px at this height)."""

    width: int
    height: int
    fps: float
    caption_px: int
    smallest_caption_px: int
    frames: int
    soundbite_videos: int = 0


class ReviewRecord(Record):
    mode: str  # immediate or after-approval
    revision: int | None = None
    reviewer: str | None = None
    at: str | None = None


class StoredArtifact(Record):
    """What the storage backend confirmed it holds for one artifact; feeds use only these."""

    key: str
    url: str
    size: int
    sha256: str
    content_type: str


class UploadResult(Record):
    #: Keys a re-render replaced: kept until no feed points at them, for a later clean-up.
    superseded: list[str] = Field(default_factory=list)


class PublishRecord(Record):
    published_at: dt.datetime  # first publication: the item's pubDate without a sidecar date
    feeds: dict[str, str] = Field(default_factory=dict)  # feed kind → URL


class Results(Record):
    timeline: Timeline | None = None
    trim: TrimResult | None = None
    loudness: LoudnessResult | None = None
    encode: EncodeResult | None = None
    transcription: TranscriptionResult | None = None
    speakers: SpeakersResult | None = None
    captions: CaptionResult | None = None
    chapters: list[ChapterMark] | None = None
    #: The normalise stage's sound report (pipeline.audio.report): what the leveler, noise
    #: reduction and limiter did, for the producer (status --json, qa.json, review page).
    sound: dict[str, Any] | None = None

    chapter_review: ChapterReview | None = None
    soundbites: list[SoundbiteResult] | None = None
    review: ReviewRecord | None = None
    audiogram: AudiogramResult | None = None
    upload: UploadResult | None = None
    publication: PublishRecord | None = None


@dataclass(frozen=True)
class Job:
    """One episode on its way through the stages. Stages return an updated copy, never mutate.

    `files` paths are relative to the workspace; `objects` are what the storage backend holds,
    so feeds point only at objects confirmed stored.
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
    files: dict[Artifact, str] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)
    objects: dict[Artifact, StoredArtifact] = field(default_factory=dict)
    results: Results = field(default_factory=Results)
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        # Keys arrive as strings from JSON and callers; the vocabulary is checked here, once.
        object.__setattr__(self, "files", {Artifact(k): v for k, v in self.files.items()})
        object.__setattr__(self, "objects", {
            Artifact(k): v if isinstance(v, StoredArtifact) else StoredArtifact.model_validate(v)
            for k, v in self.objects.items()})

    @property
    def kind(self) -> str:
        return self.probe.kind if self.probe else "unknown"

    @property
    def timeline(self) -> Timeline:
        """The episode's timeline; before trim has run, the recording as it is."""
        if self.results.timeline is not None:
            return self.results.timeline
        return Timeline.untrimmed(self.probe.duration_s if self.probe else 0.0)

    def with_file(self, artifact: Artifact, path: object) -> Job:
        return dataclasses.replace(self, files={**self.files, Artifact(artifact): str(path)})

    def with_measurements(self, **figures: Any) -> Job:
        return dataclasses.replace(self, measurements={**self.measurements, **figures})

    def with_results(self, **results: Any) -> Job:
        return dataclasses.replace(self, results=self.results.model_copy(update=results))

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)
