"""What every ASR engine returns: words with times and confidence, grouped in segments."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Word:
    """One recognised word. `text` keeps its attached punctuation, without leading spaces.
    `speaker` is the name of who said it, set only when an episode has more than one voice
    (see pipeline/asr/diarize.py); older transcripts without it read back as None."""

    text: str
    start: float
    end: float
    probability: float
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"word": self.text, "start": round(self.start, 3),
                                "end": round(self.end, 3),
                                "probability": round(self.probability, 4)}
        if self.speaker:
            data["speaker"] = self.speaker
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Word:
        speaker = data.get("speaker")
        return cls(text=data["word"], start=float(data["start"]), end=float(data["end"]),
                   probability=float(data["probability"]),
                   speaker=str(speaker) if speaker else None)


@dataclass(frozen=True)
class Segment:
    """A decoder window's output, with the figures the hallucination guards judge it by."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0

    def shifted(self, seconds: float) -> Segment:
        """This segment `seconds` later (a window's times made the recording's)."""
        return replace(self, start=self.start + seconds, end=self.end + seconds,
                       words=tuple(replace(w, start=w.start + seconds, end=w.end + seconds)
                                   for w in self.words))

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text,
                "no_speech_prob": round(self.no_speech_prob, 4),
                "avg_logprob": round(self.avg_logprob, 4),
                "compression_ratio": round(self.compression_ratio, 4),
                "words": [w.to_dict() for w in self.words]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        return cls(start=float(data["start"]), end=float(data["end"]), text=data["text"],
                   words=tuple(Word.from_dict(w) for w in data.get("words", [])),
                   no_speech_prob=float(data.get("no_speech_prob", 0.0)),
                   avg_logprob=float(data.get("avg_logprob", 0.0)),
                   compression_ratio=float(data.get("compression_ratio", 1.0)))


@dataclass(frozen=True)
class Transcript:
    language: str
    duration_s: float
    segments: tuple[Segment, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "duration_s": round(self.duration_s, 3),
                "text": self.text, "words": [w.to_dict() for w in self.words],
                "segments": [s.to_dict() for s in self.segments], **self.info}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        known = {"language", "duration_s", "text", "words", "segments"}
        return cls(language=data["language"], duration_s=float(data["duration_s"]),
                   segments=tuple(Segment.from_dict(s) for s in data["segments"]),
                   info={k: v for k, v in data.items() if k not in known})


