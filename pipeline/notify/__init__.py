"""Notifications: telling producers and reviewers what happened, once, by e-mail or webhook.

The runner, ingest and the queue workers call `event(ctx, kind, ...)` where something
happened (a recording rejected at the door or failed in a stage, captions held for review,
an episode published). `event` only records: it works out who is told (the sidecar's
`producer` or the show's `producers`, the show's `reviewers`, the show's `webhooks`), writes
the words, and adds one outbox row per recipient to the state store under a key that names
the event. The same event seen again (a task delivered twice, two `watch` processes, a
restart) finds its rows already there, so each notification is recorded once. It never
raises: a notification problem must not fail an episode.

Sending happens elsewhere, in `deliver_due`, called by the courier thread that `run` and
`watch` keep (`courier`): it claims one due row at a time in a transaction (so two processes
never send the same row), sends it, and marks it sent; a failed try is scheduled again with
doubling backoff, up to `notify.max_attempts`. A slow or dead server therefore delays only
the courier, never the pipeline. A process that dies mid-delivery leaves its claim to run
out (a lease), after which the row is sent again: at least once, and in that rare case
possibly twice, which is why every e-mail has a fixed Message-ID and every webhook a fixed
`X-Learncast-Delivery` id that receivers can drop duplicates by.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline import crashpoints
from pipeline.config import Settings, ShowSettings
from pipeline.models import Job
from pipeline.notify import messages
from pipeline.notify.channels import DeliveryError, post_webhook, send_email
from pipeline.notify.messages import KINDS, Message
from pipeline.workspace import Context

log = logging.getLogger(__name__)

#: Set when an event is recorded: the courier of this process sends it at once.
_WAKE = threading.Event()
#: How often a courier looks for retries and digests that came due.
POLL_S = 30.0
#: What `run` still spends on deliveries when it is done (the rest goes with the next run).
FINAL_BUDGET_S = 60.0


def configured(settings: Settings) -> bool:
    """Whether anything can be sent at all (an SMTP server, or a show with webhooks)."""
    return bool(settings.notify.smtp_host) or any(s.webhooks for s in settings.shows)


def _show(settings: Settings, show_id: str | None) -> ShowSettings | None:
    try:
        return settings.show(show_id)
    except KeyError:
        return None


def recipients(settings: Settings, kind: str, show: ShowSettings,
               producer: str | None = None) -> list[tuple[str, str]]:
    """(channel, recipient) pairs told about `kind` for `show`."""
    if kind not in settings.notify.events:
        return []
    people: list[str] = []
    if kind in ("rejected", "failed", "published"):
        people = [producer] if producer else list(show.producers)
    elif kind == "review":
        people = list(show.reviewers)
    out = ([("email", p) for p in dict.fromkeys(people)]
           if settings.notify.smtp_host else [])
    return out + [("webhook", url) for url in dict.fromkeys(show.webhooks)]


def review_url(settings: Settings, job_id: str) -> str:
    """Where a reviewer opens the episode: `[notify] review_url`, else `[review]`'s address."""
    base = settings.notify.review_url
    if not base:
        host = settings.review.host
        host = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "::1") else host
        base = f"http://{f'[{host}]' if ':' in host else host}:{settings.review.port}/"
    return base.rstrip("/") + f"/episodes/{job_id}"


def event(ctx: Context, kind: str, *, job: Job | None = None, stage: str | None = None,
          reason: str = "", name: str | None = None, sidecar: Path | None = None,
          note: str = "", key: str | None = None) -> int:
    """Record the notifications of one event; returns how many rows were new.

    Episode events pass `job` (and, for `failed`, `stage` and `reason`); a door rejection
    passes the file's `name`, the `reason`, where the `note` is, the `sidecar` it came with
    (for its `producer` and `show`) and a `key` unique to that drop.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    try:
        settings = ctx.settings
        if kind not in settings.notify.events or not configured(settings):
            return 0
        if job is not None:
            show = _show(settings, job.show)
            producer = job.metadata.producer
            message, key = _episode_message(ctx, kind, job, stage, reason)
        else:
            found = _sidecar_fields(sidecar)
            show = _show(settings, found.get("show"))
            if show is None:
                show = _show(settings, None)
            producer = found.get("producer")
            message = messages.rejected(show.id if show else "?", name or "?", reason, note)
        if show is None or key is None:
            return 0
        rows = _rows(settings, kind, show, producer, key, message, job)
        added = ctx.db.notify_add(rows) if rows else 0
    except Exception:  # a notification must never fail the episode or the run
        log.exception("[notify] could not record the %s notification", kind)
        return 0
    if added:
        log.info("[notify] %s: %d notification(s) recorded", kind, added)
        _WAKE.set()
    return added


def _episode_message(ctx: Context, kind: str, job: Job, stage: str | None,
                     reason: str) -> tuple[Message, str]:
    if kind == "failed":
        # The how-manieth failure of the episode this is (each is logged once, before this
        # call): the same failure seen twice has one key, a failure after a retry a new one.
        stage = stage or job.stage or "?"
        nth = sum(1 for e in ctx.db.events(job.id) if e["kind"] == "failed")
        return messages.failed(job, stage, reason or job.error or ""), \
            f"failed:{job.id}:{nth}"
    if kind == "review":
        revision = job.results.captions.revision if job.results.captions else 1
        return messages.review(job, revision, review_url(ctx.settings, job.id)), \
            f"review:{job.id}:{revision}"
    if kind == "published":
        return messages.published(job), f"published:{job.id}"
    raise ValueError(f"{kind} is not an episode event")


def _rows(settings: Settings, kind: str, show: ShowSettings, producer: str | None, key: str,
          message: Message, job: Job | None) -> list[dict[str, Any]]:
    now = time.time()
    payload = json.dumps(message.payload(), ensure_ascii=False)
    digest = settings.notify.digest == "daily"
    return [{"key": key, "channel": channel, "recipient": recipient, "kind": kind,
             "episode_id": job.id if job else None, "payload": payload,
             "status": "digest" if digest and channel == "email" else "pending",
             "next_at": now}
            for channel, recipient in recipients(settings, kind, show, producer)]


def _sidecar_fields(sidecar: Path | None) -> dict[str, str]:
    """`producer` and `show` of a sidecar that may be invalid (it is why the recording was
    rejected): read leniently, each kept only when it is a well-formed value."""
    if sidecar is None:
        return {}
    from pipeline.config import EMAIL_RE
    from pipeline.sidecar import load_raw

    data = load_raw(sidecar)
    out = {}
    producer, show = data.get("producer"), data.get("show")
    if isinstance(producer, str) and EMAIL_RE.match(producer.strip()):
        out["producer"] = producer.strip()
    if isinstance(show, str):
        out["show"] = show
    return out


# --- sending -------------------------------------------------------------------------------

def _lease_s(ctx: Context) -> float:
    """How long a claimed row is left to its sender: well past one delivery's timeouts
    (connect, TLS, login and data each wait at most `timeout_s`)."""
    return 10 * ctx.settings.notify.timeout_s


def _message_id(row: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(f"{row['key']}|{row['recipient']}".encode()).hexdigest()[:32]
    return f"<{digest}@learncast>"


def delivery_id(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{row['key']}|{row['channel']}|{row['recipient']}"
                          .encode()).hexdigest()[:32]


def _send(ctx: Context, row: Mapping[str, Any], env: Mapping[str, str]) -> None:
    payload = json.loads(row["payload"])
    settings = ctx.settings.notify
    if row["channel"] == "email":
        if not settings.smtp_host:
            raise DeliveryError("notify.smtp_host is no longer set, so the e-mail cannot be "
                                "sent; set it again to send what is waiting", permanent=True)
        send_email(settings, row["recipient"], payload["subject"], payload["text"],
                   message_id=_message_id(row), env=env)
    elif row["channel"] == "webhook":
        body = {**payload["data"], "id": delivery_id(row), "title": payload["subject"],
                "occurred_at": row["created_at"]}
        post_webhook(row["recipient"], body, event=row["kind"], delivery=delivery_id(row),
                     timeout_s=settings.timeout_s, env=env)
    else:
        raise DeliveryError(f"unknown channel {row['channel']!r}", permanent=True)


def deliver_due(ctx: Context, *, budget_s: float | None = None,
                env: Mapping[str, str] | None = None, now: dt.datetime | None = None) -> int:
    """Send every notification that is due (digests first made when their hour has come),
    one at a time, until none is left or `budget_s` is spent. Returns how many were sent."""
    env = os.environ if env is None else env
    settings = ctx.settings.notify
    db = ctx.db
    _make_digests(ctx, now or dt.datetime.now(dt.UTC))
    deadline = None if budget_s is None else time.monotonic() + budget_s
    sent = 0
    started = time.time()  # what falls due during this pass (a retry) waits for the next
    while deadline is None or time.monotonic() < deadline:
        row = db.notify_claim(started, _lease_s(ctx))
        if row is None:
            break
        crashpoints.reached("notify:claimed")
        where = f"{row['channel']} to {_shown(row)}"
        try:
            _send(ctx, row, env)
        except DeliveryError as exc:
            attempts = int(row["attempts"])
            if exc.permanent or attempts >= settings.max_attempts:
                db.notify_settle(row["id"], error=str(exc))
                log.error("[notify] %s (%s) given up after %d attempt(s): %s", row["kind"],
                          where, attempts, exc)
            else:
                delay = min(settings.retry_backoff_s * 2 ** (attempts - 1),
                            settings.retry_backoff_max_s)
                db.notify_settle(row["id"], error=str(exc), retry_at=time.time() + delay)
                log.warning("[notify] %s (%s) not delivered: %s; trying again in %.1f s",
                            row["kind"], where, exc, delay)
            continue
        except Exception as exc:  # a bug: keep the courier alive, try the row again later
            log.exception("[notify] %s (%s): unexpected error", row["kind"], where)
            db.notify_settle(row["id"], error=f"{type(exc).__name__}: {exc}",
                             retry_at=time.time() + settings.retry_backoff_max_s)
            continue
        if db.notify_settle(row["id"]):
            sent += 1
            log.info("[notify] %s sent (%s)", row["kind"], where)
    return sent


def _shown(row: Mapping[str, Any]) -> str:
    from pipeline.notify.channels import _where

    return _where(row["recipient"]) if row["channel"] == "webhook" else row["recipient"]


def _make_digests(ctx: Context, now: dt.datetime) -> int:
    """Once the day's digest hour has passed, gather the waiting e-mails of each recipient."""
    settings = ctx.settings.notify
    cutoff = now.replace(hour=settings.digest_hour, minute=0, second=0, microsecond=0)
    if now < cutoff:
        cutoff -= dt.timedelta(days=1)

    def build(recipient: str, rows: list[dict[str, Any]]) -> str:
        texts = [(p["subject"], p["text"]) for p in (json.loads(r["payload"]) for r in rows)]
        return json.dumps(messages.digest(cutoff.date(), texts).payload(), ensure_ascii=False)

    made = ctx.db.notify_digest(before=cutoff.isoformat(timespec="seconds"),
                                key=f"digest:{cutoff.date().isoformat()}",
                                now=time.time(), build=build)
    if made:
        log.info("[notify] %d daily digest(s) recorded", made)
    return made


class Courier(threading.Thread):
    """Sends notifications in the background while `run` or `watch` works."""

    def __init__(self, ctx: Context, *, final_budget_s: float = FINAL_BUDGET_S) -> None:
        super().__init__(name="learncast-notify", daemon=True)
        self.ctx = ctx
        self.final_budget_s = final_budget_s
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            stopping = self.stopping.is_set()
            _WAKE.clear()
            try:
                deliver_due(self.ctx, budget_s=self.final_budget_s if stopping else None)
            except Exception:  # the state store out of reach, say: try again later
                log.exception("[notify] delivering notifications failed; trying again later")
            if stopping:
                return
            _WAKE.wait(POLL_S)
            if self.stopping.is_set():
                continue  # one last pass, bounded

    def stop(self) -> None:
        self.stopping.set()
        _WAKE.set()


@contextlib.contextmanager
def courier(ctx: Context) -> Iterator[Courier | None]:
    """Deliver notifications in a thread while the block runs; at its end, what is due is
    still sent for up to FINAL_BUDGET_S (the rest goes with the next `run` or `watch`)."""
    if not configured(ctx.settings):
        yield None
        return
    thread = Courier(ctx)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
        thread.join(FINAL_BUDGET_S + 2 * ctx.settings.notify.timeout_s)
