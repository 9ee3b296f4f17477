"""The state database's tables, defined once for SQLite and PostgreSQL (SQLAlchemy Core).

This is the schema at its latest version; `pipeline.state.migrations` brings older databases
here. Column types are the common ground of both dialects: JSON documents are TEXT (the store
writes and reads them itself, so both databases hold the same bytes), times are ISO-8601 TEXT,
and heartbeats are double precision (PostgreSQL's REAL is 4 bytes: it cannot hold a Unix time
to the second).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

episodes = Table(
    "episodes", metadata,
    Column("id", Text, primary_key=True),
    Column("sha256", Text, nullable=False, unique=True),
    Column("show", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("original", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("stage", Text),
    Column("error", Text),
    Column("probe", Text),
    Column("metadata", Text, nullable=False),
    Column("files", Text, nullable=False, server_default="{}"),
    Column("measurements", Text, nullable=False, server_default="{}"),
    Column("objects", Text, nullable=False, server_default="{}"),
    Column("results", Text, nullable=False, server_default="{}"),
    Column("owner", Text),
    Column("heartbeat", Double),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Index("episodes_status", "status"),
)

#: One row per (episode, stage). `owner`/`heartbeat` are the lease of a distributed worker
#: running the stage (the embedded runner leases whole episodes in `episodes.owner`).
stage_runs = Table(
    "stage_runs", metadata,
    Column("episode_id", Text, ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
    Column("stage", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("seconds", Double),
    Column("error", Text),
    Column("owner", Text),
    Column("heartbeat", Double),
    Column("progress_done", Double),  # how far a running stage got (transcribe: seconds)
    Column("progress_total", Double),
    PrimaryKeyConstraint("episode_id", "stage"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("episode_id", Text),
    Column("at", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("message", Text, nullable=False),
    sqlite_autoincrement=True,
)

show_feeds = Table(
    "show_feeds", metadata,
    Column("show", Text, nullable=False),
    Column("feed", Text, nullable=False),
    Column("guid", Text, nullable=False),
    Column("first_url", Text, nullable=False),
    Column("token", Text),
    Column("sha256", Text),
    Column("items", Text, nullable=False, server_default="[]"),
    Column("url", Text),
    Column("published_at", Text),
    Column("created_at", Text, nullable=False),
    PrimaryKeyConstraint("show", "feed"),
)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("episode_id", Text, ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
    Column("at", Text, nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("captions_sha256", Text, nullable=False, server_default=""),
    Index("reviews_episode", "episode_id", "id"),
    sqlite_autoincrement=True,
)

#: Working copies of an episode's artifacts in the storage backend, under a private prefix
#: (distributed mode: workers share no disk). One row per artifact: the current copy.
working_copies = Table(
    "working_copies", metadata,
    Column("episode_id", Text, ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
    Column("artifact", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    PrimaryKeyConstraint("episode_id", "artifact"),
)

#: The notification outbox: one row per (event, channel, recipient), so a notification is
#: recorded once however many processes see the event, and sent by whichever process claims
#: it first. `status`: pending → sending (claimed, `owner` until `lease_until`) → sent; or
#: back to pending with a later `next_at` after a failed try, failed after the last one;
#: e-mails of a daily digest wait as `digest` until their digest row takes them (`digested`).
notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("episode_id", Text),
    Column("payload", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_at", Double, nullable=False),
    Column("owner", Text),
    Column("lease_until", Double),
    Column("error", Text),
    Column("created_at", Text, nullable=False),
    Column("sent_at", Text),
    UniqueConstraint("key", "channel", "recipient", name="notifications_once"),
    Index("notifications_due", "status", "next_at"),
    sqlite_autoincrement=True,
)

#: Learners of private shows. Only the sha256 of a learner's token is kept: a copy of the
#: database does not open anyone's feed. `id` is a random pseudonym, the only thing about a
#: learner that access logs and per-learner figures ever hold.
learners = Table(
    "learners", metadata,
    Column("id", Text, primary_key=True),
    Column("show", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("token_sha256", Text, nullable=False, unique=True),
    Column("created_at", Text, nullable=False),
    Column("revoked_at", Text),
    Index("learners_show", "show", "name"),
)

#: Downloads per episode and day (UTC), counted from access logs (`pipeline.stats`); `learner`
#: is '' unless the show counts per learner. Kept after the raw logs are deleted.
downloads = Table(
    "downloads", metadata,
    Column("episode_id", Text, nullable=False),
    Column("day", Text, nullable=False),
    Column("learner", Text, nullable=False, server_default=""),
    Column("downloads", Integer, nullable=False),
    PrimaryKeyConstraint("episode_id", "day", "learner"),
)
