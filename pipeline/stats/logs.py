"""Access logs: what `serve` writes, and the requests read back from it and from S3's
server access logs, in one shape for counting.

`serve` writes one JSON object a line into `<stats.access_log>/access-YYYY-MM-DD.jsonl`
(UTC days) — only when `[stats] enabled` — and deletes days older than `stats.keep_days`:
the client address and user agent in them are personal data, kept no longer than needed to
count. A personal URL's token is never written (the path is logged as `/p/-/<key>`); the
learner's pseudonym is, only for shows with `learner_stats = true`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote

log = logging.getLogger(__name__)

LOG_NAME = re.compile(r"^access-(\d{4}-\d{2}-\d{2})\.jsonl$")


@dataclass(frozen=True)
class Request:
    """One request for a stored object, as the counting needs it. `first`/`last`: the byte
    span sent (inclusive), when known; `sent`: bytes sent."""

    at: dt.datetime
    client: str
    agent: str
    method: str
    key: str
    status: int
    sent: int
    size: int | None = None
    first: int | None = None
    last: int | None = None
    learner: str | None = None


class AccessLog:
    """`serve`'s access log: append-only JSON lines, one file per UTC day, old days deleted."""

    def __init__(self, folder: Path, keep_days: int) -> None:
        self.folder = folder
        self.keep_days = keep_days
        self._lock = threading.Lock()
        self._day: dt.date | None = None
        self._file: TextIO | None = None

    def write(self, record: dict[str, Any], now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        line = json.dumps({"at": now.isoformat(timespec="milliseconds"), **record},
                          ensure_ascii=True, separators=(",", ":"))
        with self._lock:
            try:
                if self._day != now.date() or self._file is None:
                    self._rotate(now.date())
                assert self._file is not None
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:  # a full disk must not take the server down
                log.error("[serve] access log %s: %s", self.folder, exc)

    def _rotate(self, day: dt.date) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = (self.folder / f"access-{day.isoformat()}.jsonl").open(
            "a", encoding="ascii")
        self._day = day
        prune(self.folder, self.keep_days, day)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None


def prune(folder: Path, keep_days: int, today: dt.date | None = None) -> list[Path]:
    """Delete access logs of days more than `keep_days` ago; returns what was deleted."""
    today = today or dt.datetime.now(dt.UTC).date()
    gone = []
    for path in folder.glob("access-*.jsonl") if folder.is_dir() else []:
        m = LOG_NAME.match(path.name)
        if m and (today - dt.date.fromisoformat(m.group(1))).days > keep_days:
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def read_serve_logs(folder: Path) -> Iterator[Request]:
    """Every request in `serve`'s access logs (lines that are not records are skipped)."""
    if not folder.is_dir():
        return
    for path in sorted(p for p in folder.iterdir() if LOG_NAME.match(p.name)):
        with path.open(encoding="ascii", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    yield Request(
                        at=dt.datetime.fromisoformat(rec["at"]), client=str(rec["ip"]),
                        agent=str(rec.get("ua") or ""), method=str(rec["method"]),
                        key=_key(str(rec["path"])), status=int(rec["status"]),
                        sent=int(rec.get("sent") or 0), size=rec.get("size"),
                        first=rec.get("first"), last=rec.get("last"),
                        learner=rec.get("learner"))
                except (ValueError, KeyError, TypeError):
                    continue


def _key(path: str) -> str:
    """The storage key of a logged path (`/p/-/<key>` for a personal URL)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if len(parts) >= 2 and parts[0] == "p":
        parts = parts[2:]
    return "/".join(parts)


# --- S3 server access logs ---------------------------------------------------------------

_S3_TIME = "%d/%b/%Y:%H:%M:%S %z"
_Q = r'"((?:[^"\\]|\\.)*)"'
S3_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]+)\] (\S+) (\S+) (\S+) (\S+) (\S+) " + _Q
                     + r" (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) " + _Q + " " + _Q)


def parse_s3_line(line: str, prefix: str = "") -> Request | None:
    """One line of an S3 server access log (AWS's documented format), or None.

    Fields: owner bucket [time] remote-ip requester request-id operation key "request-uri"
    status error-code bytes-sent object-size total-time turnaround "referer" "user-agent" ...
    S3 logs no Range header: `sent` is what was sent, the span is unknown.
    """
    m = S3_LINE.match(line)
    if m is None:
        return None
    f = m.groups()
    try:
        at = dt.datetime.strptime(f[2], _S3_TIME).astimezone(dt.UTC)
        key, uri = unquote(f[7]), f[8]
        method = uri.split(" ", 1)[0] if uri and uri != "-" else f[6].split(".")[1]
        status = int(f[9])
        sent = 0 if f[11] == "-" else int(f[11])
        size = None if f[12] == "-" else int(f[12])
    except (IndexError, ValueError):
        return None
    if key == "-":
        return None
    if prefix and key.startswith(prefix):
        key = key[len(prefix):]
    agent = f[16].replace('\\"', '"') if f[16] != "-" else ""
    return Request(at=at, client=f[3], agent=agent, method=method, key=key, status=status,
                   sent=sent, size=size)


def parse_s3_lines(lines: Iterable[str], prefix: str = "") -> Iterator[Request]:
    for line in lines:
        if line.strip() and (req := parse_s3_line(line, prefix)) is not None:
            yield req
