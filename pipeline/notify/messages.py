"""What each notification says: a subject and text for e-mail, a JSON body for webhooks.

Written once per event, when it happens, and stored with the outbox row: a retry hours later
sends the same words, and the daily digest is made from the same texts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pipeline.models import Job

KINDS = ("rejected", "failed", "review", "published")


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {"subject": self.subject, "text": self.text, "data": self.data}


def _episode(job: Job) -> dict[str, Any]:
    return {"id": job.id, "title": job.title, "source": job.source, "show": job.show,
            "status": str(job.status), "stage": job.stage}


def _short(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def rejected(show: str, name: str, reason: str, note: str) -> Message:
    subject = f"[Learncast] {name} was not accepted"
    text = (f"Learncast could not accept the recording '{name}' (show {show}); it did not "
            f"become an episode.\n\nWhat was wrong:\n  {reason}\n\nThe file is kept in "
            f"{note}, with a note. Fix the problem, then drop the recording (and its sidecar) "
            "into the inbox again.\n")
    return Message(subject, text, {"event": "rejected", "show": show, "file": name,
                                   "reason": reason, "text": f"{name} was not accepted: "
                                   f"{_short(reason)}"})


def failed(job: Job, stage: str, reason: str) -> Message:
    subject = f"[Learncast] {job.show}: '{job.title}' failed at {stage}"
    text = (f"Learncast could not finish '{job.source}' (episode {job.id}, show {job.show}).\n\n"
            f"Stage: {stage}\nWhat was wrong:\n  {reason}\n\nThe original is kept unchanged. "
            f"Fix the cause, then run\n  learncast retry {job.id}\n")
    return Message(subject, text, {"event": "failed", "show": job.show,
                                   "episode": _episode(job), "stage": stage, "reason": reason,
                                   "text": f"'{job.title}' failed at {stage}: {_short(reason)}"})


def review(job: Job, revision: int, url: str) -> Message:
    subject = f"[Learncast] {job.show}: captions of '{job.title}' await review"
    text = (f"The captions of '{job.title}' (episode {job.id}, show {job.show}, caption "
            f"revision {revision}) wait for a reviewer's approval before the episode is "
            f"published.\n\nReview them at:\n  {url}\n")
    return Message(subject, text, {"event": "review", "show": job.show,
                                   "episode": _episode(job), "revision": revision,
                                   "review_url": url,
                                   "text": f"Captions of '{job.title}' await review: {url}"})


def published(job: Job) -> Message:
    feeds = job.results.publication.feeds if job.results.publication else {}
    lines = "".join(f"  {kind}: {url}\n" for kind, url in sorted(feeds.items()))
    subject = f"[Learncast] {job.show}: '{job.title}' is published"
    text = (f"'{job.title}' (episode {job.id}, show {job.show}) is published"
            + (f" in:\n{lines}" if lines else ".\n"))
    return Message(subject, text, {"event": "published", "show": job.show,
                                   "episode": _episode(job), "feeds": feeds,
                                   "text": f"'{job.title}' is published"})


def digest(day: dt.date, texts: list[tuple[str, str]]) -> Message:
    """One e-mail for a day's notifications to one recipient: (subject, text) each."""
    n = len(texts)
    subject = f"[Learncast] Daily digest {day.isoformat()}: {n} notification{'s' * (n != 1)}"
    parts = [f"{i}. {sub}\n\n{body.strip()}\n" for i, (sub, body) in enumerate(texts, start=1)]
    text = (f"{n} notification{'s' * (n != 1)} since the last digest:\n\n"
            + "\n" + ("\n" + "-" * 60 + "\n\n").join(parts))
    return Message(subject, text, {"event": "digest", "count": n})
