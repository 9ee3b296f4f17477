"""Private shows: one personal feed URL per learner, withdrawn by revoking it.

A private show (`private = true`) is never public. Its objects live under `private/` in
storage (no ACL, no bucket policy rule and no `serve` path makes them public), and each
learner gets a URL with an unguessable token of their own:

    <feed base>/p/<token>/private/feeds/<show>/podcast.xml

`learncast serve` checks the token on every request (`PrivateGate`): a valid one gets the
show's feed with every link in it made personal too, so the app downloads the media with
the same token; a revoked, wrong or malformed one gets exactly the 404 of a file that does
not exist, by the same path (one database lookup of the token's sha256, whatever it is).
Only that digest is stored, so a copy of the database opens no one's feed; the token is
shown once, when the learner is added.

On S3 the media are not served by `serve`: the personal feed it builds on each fetch points
at presigned URLs that expire after `private.presign_seconds`. A revoked learner's feed stops
at once; links already fetched stop when they expire. (Re-signing feeds on a schedule would
have put a public copy of every learner's feed in the bucket; building it on fetch keeps
nothing public and needs no job.)
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from pipeline.config import Settings, ShowSettings
from pipeline.errors import ConfigError, InputError, PipelineError
from pipeline.feeds.build import FEED_FILES
from pipeline.serve import Access
from pipeline.sidecar import text_problem
from pipeline.state import StateStore
from pipeline.storage.base import PRIVATE_PREFIX, check_key

#: The path segment of personal URLs: /p/<token>/<key>.
PERSONAL = "p"
TOKEN_BYTES = 24  # 192 bits: 32 URL-safe characters
MAX_NAME = 254
#: Feeds are small; a larger object under a feed key is not read whole into memory.
MAX_FEED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Learner:
    id: str
    show: str
    name: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Learner:
        return cls(row["id"], row["show"], row["name"], row["created_at"], row["revoked_at"])


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def private_show(settings: Settings, show_id: str) -> ShowSettings:
    try:
        show = settings.show(show_id)
    except KeyError:
        raise ConfigError(f"no show {show_id!r}; configured shows: "
                          f"{', '.join(settings.show_ids)}") from None
    if show.id != show_id or not show.private:
        private = [s.id for s in settings.shows if s.private] or ["none yet"]
        raise ConfigError(f"show {show_id!r} is not private, so it has no personal feeds; set "
                          f"private = true on it in config/learncast.toml (private shows: "
                          f"{', '.join(private)})")
    return show


def feed_base(settings: Settings) -> str:
    """Where learners reach `learncast serve`."""
    return (settings.private.feed_base_url or settings.storage.public_base_url).rstrip("/")


def personal_url(settings: Settings, token: str, key: str) -> str:
    return f"{feed_base(settings)}/{PERSONAL}/{token}/{key}"


def feed_keys(show: ShowSettings) -> dict[str, str]:
    """Feed kind → key, for a private show (the token in a feed key is the learner's)."""
    return {kind: f"{PRIVATE_PREFIX}feeds/{show.id}/{name}" for kind, name in FEED_FILES.items()}


@dataclass(frozen=True)
class Added:
    learner: Learner
    token: str
    urls: dict[str, str]  # feed kind → personal URL


def _clean_name(who: str) -> str:
    name = " ".join(who.split())
    if not name:
        raise InputError("give the learner's e-mail address or name")
    if len(name) > MAX_NAME or text_problem(name):
        raise InputError(f"{who[:60]!r} cannot be a learner's name: at most {MAX_NAME} "
                         "characters, no control characters")
    return name


def add(db: StateStore, settings: Settings, show_id: str, who: str, *,
        replace: bool = False) -> Added:
    """A new learner with a new token. A learner of that name who is still active is refused
    (their URL works already), unless `replace`: then their old token is revoked first."""
    show = private_show(settings, show_id)
    name = _clean_name(who)
    active = [r for r in db.learners(show.id) if r["name"] == name and not r["revoked_at"]]
    if active and not replace:
        raise InputError(f"{name} already has a personal feed for {show.id} (learner "
                         f"{active[0]['id']}); to give them a new URL and stop the old one, "
                         f"run `learncast learners add {show.id} '{name}' --replace`")
    if active:
        db.learner_revoke(show.id, name)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    learner_id = "l" + secrets.token_hex(5)
    db.learner_add(learner_id, show.id, name, token_digest(token))
    row = next(r for r in db.learners(show.id) if r["id"] == learner_id)
    urls = {kind: personal_url(settings, token, key) for kind, key in feed_keys(show).items()}
    return Added(Learner.of(row), token, urls)


def revoke(db: StateStore, settings: Settings, show_id: str, who: str) -> list[Learner]:
    """Revoke a learner (by name or id): their feed and media stop working at once."""
    show = private_show(settings, show_id)
    gone = db.learner_revoke(show.id, " ".join(who.split()))
    if not gone:
        raise InputError(f"no active learner {who!r} in show {show.id}; see `learncast "
                         f"learners list {show.id}`")
    return [Learner.of({**r, "show": show.id, "created_at": "", "revoked_at": "now"})
            for r in gone]


def listing(db: StateStore, show_id: str | None = None) -> list[Learner]:
    return [Learner.of(r) for r in db.learners(show_id)]


@dataclass(frozen=True)
class Imported:
    added: list[Added]
    skipped: list[tuple[str, str]]  # (name, why)


def read_csv(path: Path) -> list[str]:
    """Learners from a CSV file: a column `email` or `name` (the first of those, by its
    header), or without such a header the first column; blank rows are skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} ({exc}); give a UTF-8 CSV file") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    column = next((header.index(h) for h in ("email", "e-mail", "name") if h in header), None)
    if column is not None:
        rows = rows[1:]
    return [r[column or 0].strip() for r in rows if len(r) > (column or 0)
            and r[column or 0].strip()]


def import_csv(db: StateStore, settings: Settings, show_id: str, path: Path) -> Imported:
    """Add every learner in a CSV file; ones already active are skipped (and said so)."""
    show = private_show(settings, show_id)
    names = read_csv(path)
    if not names:
        raise InputError(f"{path} lists no learners; give a CSV with an `email` (or `name`) "
                         "column")
    added, skipped = [], []
    for who in names:
        try:
            added.append(add(db, settings, show.id, who))
        except InputError as exc:
            skipped.append((who, str(exc)))
    return Imported(added, skipped)


# --- personal feeds -------------------------------------------------------------------------


def show_of(key_parts: list[str]) -> str | None:
    """The show a private key belongs to: private/<show>/..., private/feeds/<show>/...,
    private/shows/<show>/..."""
    if len(key_parts) < 3 or key_parts[0] + "/" != PRIVATE_PREFIX:
        return None
    if key_parts[1] in ("feeds", "shows"):
        return key_parts[2] if len(key_parts) >= 4 else None
    return key_parts[1]


def is_feed(key_parts: list[str]) -> bool:
    return (len(key_parts) == 4 and key_parts[1] == "feeds"
            and key_parts[3] in FEED_FILES.values())


def personalise(xml: bytes, root: str, url_for: Callable[[str], str]) -> bytes:
    """Every link to a private key in a feed replaced by `url_for(key)`: the learner's own
    links (XML-escaped, as they must be). `root` is the URL of `private` in storage, as the
    feed writes it."""
    pattern = re.compile(re.escape(escape(root.rstrip("/")).encode())
                         + rb"/([A-Za-z0-9][A-Za-z0-9._~/-]*)")

    def swap(m: re.Match[bytes]) -> bytes:
        try:
            key = check_key(PRIVATE_PREFIX + m.group(1).decode("ascii"))
        except PipelineError:  # not a link we wrote: leave it (it opens nothing anyway)
            return m.group(0)
        return escape(url_for(key)).encode()

    return pattern.sub(swap, xml)


class PrivateGate:
    """`serve`'s check of every request path against the private shows (see module doc).

    `storage`: the S3 backend when that is where the objects are (then `serve` answers
    only personal feeds, whose media links are presigned); None for the local folder.
    """

    def __init__(self, settings: Settings, db: StateStore, storage: Any = None) -> None:
        self.settings = settings
        self.db = db
        self.s3 = storage
        self.private = {s.id: s for s in settings.shows if s.private}
        self._legacy = {s.id for s in self.private.values()}
        if storage is not None:
            self.root = storage.url(PRIVATE_PREFIX.rstrip("/"))
        else:
            self.root = f"{settings.storage.public_base_url.rstrip('/')}/{PRIVATE_PREFIX}"
        self.root = self.root.rstrip("/")
        self._lock = threading.Lock()
        self._sources: dict[str, tuple[str, bytes]] = {}
        self._made: dict[tuple[str, str], tuple[str, float, bytes]] = {}

    def resolve(self, parts: list[str], read: Callable[[list[str]], bytes | None],
                ) -> Access | None:
        """What to answer for the request path `parts` (None: 404, as for a missing file).
        `read(parts)` reads a public file (the published feed) safely."""
        if parts[0] == PERSONAL:
            return self._personal(parts, read)
        if self.s3 is not None or self._is_private(parts):
            return None
        return Access(parts=parts, logged="/" + "/".join(parts))

    def _is_private(self, parts: list[str]) -> bool:
        """Keys of private shows, also ones written before the show became private."""
        head = parts[0]
        if head + "/" == PRIVATE_PREFIX or head in self._legacy:
            return True
        if len(parts) >= 2 and head in ("feeds", "shows"):
            return any(parts[1] == s or parts[1].startswith(s + "-") for s in self._legacy)
        return False

    def _personal(self, parts: list[str], read: Callable[[list[str]], bytes | None],
                  ) -> Access | None:
        token = parts[1] if len(parts) > 1 else ""
        rest = parts[2:]
        # One lookup by digest for every token, right or wrong, revoked or malformed.
        row = self.db.learner_by_token(token_digest(token))
        show_id = show_of(rest)
        if (row is None or row["revoked_at"] or show_id is None or row["show"] != show_id
                or show_id not in self.private):
            return None
        show = self.private[show_id]
        learner = row["id"] if show.learner_stats else None
        logged = f"/{PERSONAL}/-/" + "/".join(rest)
        if is_feed(rest):
            data = self._feed(rest, token, row["id"], read)
            return None if data is None else Access(feed=data, learner=learner, logged=logged)
        if self.s3 is not None:
            return None  # media come from the bucket, through presigned links
        return Access(parts=rest, learner=learner, logged=logged)

    def _feed(self, rest: list[str], token: str, learner_id: str,
              read: Callable[[list[str]], bytes | None]) -> bytes | None:
        key = "/".join(rest)
        settings = self.settings

        def mine(k: str) -> str:
            if self.s3 is None or k.startswith(f"{PRIVATE_PREFIX}feeds/"):
                return personal_url(settings, token, k)
            return str(self.s3.presign(k, settings.private.presign_seconds))

        if self.s3 is None:
            source = read(rest)
            return None if source is None else personalise(source, self.root, mine)
        found = self._source(key)
        if found is None:
            return None
        sha, source = found
        now = time.monotonic()
        with self._lock:
            made = self._made.get((learner_id, key))
            # The same links for half their lifetime: the feed a learner's app sees does not
            # change on every refresh, and every link in it has at least that much left.
            if made and made[0] == sha and now - made[1] < settings.private.presign_seconds / 2:
                return made[2]
        data = personalise(source, self.root, mine)
        with self._lock:
            if len(self._made) > 10_000:
                self._made.clear()
            self._made[(learner_id, key)] = (sha, now, data)
        return data

    def _source(self, key: str) -> tuple[str, bytes] | None:
        """The published feed under `key` from the bucket, fetched again only when the state
        database says it was published anew."""
        url = self.s3.url(key)
        rows = [r for r in self.db.feed_rows() if r.get("url") == url and r.get("sha256")]
        if not rows:
            return None
        sha = str(rows[0]["sha256"])
        with self._lock:
            cached = self._sources.get(key)
        if cached and cached[0] == sha:
            return cached
        data = self.s3.get_bytes(key, MAX_FEED_BYTES)
        with self._lock:
            self._sources[key] = (sha, data)
        return sha, data
