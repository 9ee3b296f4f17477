"""What passes between stages: the artifact vocabulary and the one timeline.

Every file a stage reads or writes is named by an `Artifact`, never by a free string, so the
runner can check at start-up that each stage's needs are made by an earlier stage, and hand the
stage its inputs already resolved (no stage guesses "which audio do I read").

`Timeline` is the one mapping from "time in the recording as dropped" (what producers give
chapter times in) to "time in a deliverable" (what players show): trim records what it kept,
encode where the content starts after an intro bumper, package how long each deliverable is.
ID3, MP4 and JSON chapters, captions and the review page's waveform all read it, so they
cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Artifact(StrEnum):
    """A file an episode has, by what it is. Values are the keys in the state database."""

    ORIGINAL = "original"  # the recording as dropped, archived byte for byte (ingest)
    SOURCE_AUDIO = "source_audio"  # lossless copy of its audio track (prepare)
    TRIMMED_AUDIO = "trimmed_audio"  # head, tail and long pauses cut (trim)
    TRIMMED_VIDEO = "trimmed_video"  # the picture cut at the same instants (trim, video only)
    MASTER_AUDIO = "master_audio"  # loudness-normalised content, lossless (normalise)
    TRANSCRIPT = "transcript_words"  # words with times in content time (transcribe)
    SPEAKERS = "speakers"  # speaker turns in content time, and their names (diarize)
    ENCODED_AUDIO = "encoded_audio"  # MP3 with bumpers, loudness verified, untagged (encode)
    ENCODED_VIDEO = "encoded_video"  # MP4 picture + AAC, loudness verified (encode)
    VTT = "vtt"  # captions and transcripts in deliverable time (caption)
    SRT = "srt"
    TXT = "txt"
    HTML = "html"
    WORDS = "json"  # words, confidences and cues
    QA = "qa"  # the caption QA report
    ASR_VTT = "asr_vtt"  # the recogniser's captions, kept when a reviewer first edits
    CHAPTERS = "chapters"  # Podcasting 2.0 JSON chapters (chapters)
    AUDIO = "audio"  # the published MP3: tags, cover, chapters (package)
    VIDEO = "video"  # the published MP4: chapters, caption track, cover (package)
    # Soundbites: one artifact per clip (at most three), so each is resolved, checked,
    # stored under its own content-addressed key and confirmed like any other file.
    SOUNDBITE_1 = "soundbite_1"  # MP3 clips, faded and loudness-matched (soundbites)
    SOUNDBITE_2 = "soundbite_2"
    SOUNDBITE_3 = "soundbite_3"
    AUDIOGRAM = "audiogram"  # MP4 of an audio-only episode: artwork, bars, captions (audiogram)
    SOUNDBITE_VIDEO_1 = "soundbite_video_1"  # square audiograms of the clips (audiogram)
    SOUNDBITE_VIDEO_2 = "soundbite_video_2"
    SOUNDBITE_VIDEO_3 = "soundbite_video_3"


#: The soundbite clips and their square videos, in clip order.
SOUNDBITES: tuple[Artifact, ...] = (Artifact.SOUNDBITE_1, Artifact.SOUNDBITE_2,
                                    Artifact.SOUNDBITE_3)
SOUNDBITE_VIDEOS: tuple[Artifact, ...] = (Artifact.SOUNDBITE_VIDEO_1,
                                          Artifact.SOUNDBITE_VIDEO_2,
                                          Artifact.SOUNDBITE_VIDEO_3)

#: Artifacts stored for learners, in upload order (media first, then what points into them).
PUBLISHED: tuple[Artifact, ...] = (
    Artifact.AUDIO, Artifact.VIDEO, Artifact.AUDIOGRAM, Artifact.VTT, Artifact.SRT,
    Artifact.TXT, Artifact.HTML, Artifact.CHAPTERS, *SOUNDBITES, *SOUNDBITE_VIDEOS,
)

#: Lists shown as one key in `status --json` (`files.soundbites` is a list of clips).
GROUPS: dict[str, tuple[Artifact, ...]] = {"soundbites": SOUNDBITES,
                                           "soundbite_videos": SOUNDBITE_VIDEOS}


def grouped(by_artifact: Mapping[Artifact, Any]) -> dict[str, Any]:
    """`files` or `objects` keyed by artifact value, the numbered clips as lists."""
    members = {a for group in GROUPS.values() for a in group}
    out: dict[str, Any] = {a.value: v for a, v in by_artifact.items() if a not in members}
    for name, group in GROUPS.items():
        out[name] = [by_artifact[a] for a in group if a in by_artifact]
    return out

#: Caption and transcript renditions re-rendered when a reviewer edits the cues.
CAPTION_FILES: tuple[Artifact, ...] = (Artifact.VTT, Artifact.SRT, Artifact.TXT, Artifact.HTML)


class Timeline(BaseModel):
    """Recording time → deliverable time, frozen once the stages that shape it have run.

    `kept` are the [start, end) stretches of the recording that trim kept, in order; the
    content is those stretches played back to back. `intro_s` is where the content starts in
    the deliverables (the intro bumper's length minus the crossfade). `durations` holds each
    deliverable's measured length (by artifact value: `audio`, `video`).
    """

    model_config = ConfigDict(frozen=True)

    source_duration_s: float = Field(ge=0)
    kept: tuple[tuple[float, float], ...]
    intro_s: float = Field(0.0, ge=0)
    durations: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def untrimmed(cls, duration_s: float) -> Timeline:
        return cls(source_duration_s=duration_s, kept=((0.0, duration_s),))

    @property
    def content_duration_s(self) -> float:
        return sum(b - a for a, b in self.kept)

    @property
    def cut(self) -> list[tuple[float, float]]:
        """The stretches of the recording that are not in the deliverables."""
        bounds = [0.0, *(t for seg in self.kept for t in seg), self.source_duration_s]
        pairs = zip(bounds[::2], bounds[1::2], strict=True)
        return [(a, b) for a, b in pairs if b > a]

    def to_content(self, t: float) -> float:
        """Recording time → time in the trimmed content (cut stretches collapse to a point)."""
        elapsed = 0.0
        for a, b in self.kept:
            if t < a:
                return elapsed
            if t < b:
                return elapsed + (t - a)
            elapsed += b - a
        return elapsed

    def to_deliverable(self, t: float) -> float:
        """Recording time → time in the MP3/MP4 (after trim and any intro)."""
        return self.intro_s + self.to_content(t)

    def content_to_deliverable(self, t: float) -> float:
        """Content time (what transcription sees) → deliverable time."""
        return self.intro_s + t

    def content_to_recording(self, t: float) -> float:
        """Content time → recording time (the inverse of `to_content` within kept audio)."""
        elapsed = 0.0
        for a, b in self.kept:
            if t <= elapsed + (b - a):
                return a + (t - elapsed)
            elapsed += b - a
        return self.kept[-1][1] if self.kept else t

    def duration(self, artifact: Artifact) -> float | None:
        return self.durations.get(artifact.value)

    def with_intro(self, intro_s: float) -> Timeline:
        return self.model_copy(update={"intro_s": round(intro_s, 6)})

    def with_durations(self, **seconds: float) -> Timeline:
        return self.model_copy(update={"durations": {**self.durations, **seconds}})
