"""Which queue each stage's task goes to: machines subscribe to the work they are built for.

`asr` is speech recognition (the GPU machines), `media` everything that runs ffmpeg or reads
media (CPU machines), `publish` what talks to storage and builds feeds (small, I/O-bound; the
review gate sits here too: it only reads the state store).
"""

from __future__ import annotations

from pipeline.runner import STAGES

QUEUES: tuple[str, ...] = ("asr", "media", "publish")

ROUTES: dict[str, str] = {
    "prepare": "media", "trim": "media", "normalise": "media", "transcribe": "asr",
    "diarize": "asr",  # a neural voice encoder, like recognition: the model machines
    "encode": "media", "chapters": "media", "caption": "media", "soundbites": "media",
    "package": "media", "review": "publish", "audiogram": "media", "upload": "publish",
    "publish": "publish",
}

_missing = [s.name for s in STAGES if s.name not in ROUTES]
if _missing:  # a new stage must be given a queue here
    raise RuntimeError(f"no queue for stage(s) {', '.join(_missing)} in pipeline/queue/routing.py")


def queue_of(stage: str) -> str:
    return ROUTES[stage]


def task_name(stage: str) -> str:
    """The Celery task of a stage (what `celery inspect` and Flower show)."""
    return f"learncast.{stage}"
