"""Working copies: how a stage's files reach a worker that has never seen the episode.

Workers share no disk. When a stage finishes, whatever it made goes to the storage backend
under `[queue] work_prefix` (a private prefix: no feed ever points there, and the objects are
sent `private, no-store`), and the state store records each copy (artifact, workspace path,
key, sha256) in the same transaction that marks the stage done. Before a stage runs, its
declared inputs are fetched into the worker's own workspace at the same relative paths,
unless an identical file is already there (a worker that ran the previous stage of the same
episode downloads nothing). When the episode is published, its working copies are deleted.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from pipeline.artifacts import Artifact
from pipeline.errors import PipelineError, RetryableError
from pipeline.fsutil import sha256_file
from pipeline.models import Job, Status
from pipeline.runner import Stage
from pipeline.state import WorkingCopy
from pipeline.workspace import Context

log = logging.getLogger(__name__)

CACHE_CONTROL = "private, no-store"
CONTENT_TYPE = "application/octet-stream"
#: Left beside an original this worker downloaded, so pruning never touches one it ingested.
FETCHED_MARK = ".learncast-fetched"


def work_key(ctx: Context, job_id: str, artifact: Artifact, sha256: str, name: str) -> str:
    """`<work_prefix>/<episode>/<artifact>-<sha256[:16]><suffix>`: new whenever the bytes
    change, so a reader never gets a half-replaced copy."""
    suffix = "".join(Path(name).suffixes[-2:]).lower()
    suffix = re.sub(r"[^a-z0-9.]", "", suffix)[:20]
    return f"{ctx.settings.queue.work_prefix}/{job_id}/{artifact.value}-{sha256[:16]}{suffix}"


def _digest(ctx: Context, path: Path) -> str:
    """sha256 of a local file, remembered per (path, size, mtime) for the worker's lifetime."""
    st = path.stat()
    cache: dict[tuple[str, int, int], str] = ctx.resources.setdefault("sha256_cache", {})
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in cache:
        cache[key] = sha256_file(path)
    return cache[key]


def _matches(ctx: Context, path: Path, copy: WorkingCopy) -> bool:
    try:
        return path.stat().st_size == copy.size and _digest(ctx, path) == copy.sha256
    except FileNotFoundError:
        return False


def fetch_inputs(ctx: Context, job: Job, stage: Stage) -> int:
    """Download the stage's inputs that this workspace lacks; returns bytes fetched."""
    return fetch_files(ctx, job, (*stage.needs, *stage.uses), stage.name)


def fetch_files(ctx: Context, job: Job, artifacts: Iterable[Artifact], label: str) -> int:
    """Download those of the episode's `artifacts` that this workspace lacks (or holds in
    another version than the working copy); returns bytes fetched. `label` prefixes the log
    lines (the stage, or `review`)."""
    copies = ctx.db.working_copies(job.id)
    fetched = 0
    for artifact in artifacts:
        stored, copy = job.files.get(artifact), copies.get(artifact)
        if stored is None or copy is None or copy.path != stored:
            continue  # never made, or made before copies existed: resolve_inputs says so
        path = ctx.workspace.abs(stored)
        if _matches(ctx, path, copy):
            continue
        ctx.storage.fetch(copy.key, path)
        if not _matches(ctx, path, copy):
            path.unlink(missing_ok=True)
            raise RetryableError(f"the working copy {copy.key} of episode {job.id} arrived "
                                 f"with other content than was stored (sha256 {copy.sha256}); "
                                 "fetching it again")
        fetched += copy.size
        if artifact is Artifact.ORIGINAL:  # ours to remove later; an ingested one never is
            (path.parent / FETCHED_MARK).touch()
        log.info("[%s] %s: fetched %s (%d bytes)", label, job.id, artifact.value, copy.size)
    return fetched


def store_outputs(ctx: Context, before: Job, after: Job, stage: Stage,
                  ) -> tuple[list[WorkingCopy], list[str]]:
    """Store what the stage made; returns (new copies, keys of the copies they replace)."""
    return store_files(ctx, after, stage.makes, f"stage '{stage.name}'")


def store_files(ctx: Context, job: Job, artifacts: Iterable[Artifact], maker: str,
                ) -> tuple[list[WorkingCopy], list[str]]:
    """Store those of the episode's `artifacts` whose file differs from its working copy;
    returns (new copies, keys of the copies they replace). The caller records the new copies
    (with the change that made them) and deletes the replaced keys once that is committed."""
    copies = ctx.db.working_copies(job.id)
    new: list[WorkingCopy] = []
    replaced: list[str] = []
    for artifact in artifacts:
        stored = job.files.get(artifact)
        if stored is None:
            continue
        path = ctx.workspace.abs(stored)
        if not path.is_file():
            raise PipelineError(f"{maker} recorded {artifact.value} at {stored}, "
                                "but there is no such file. This is a Learncast bug; please "
                                f"report it, then run `learncast retry {job.id}`")
        sha, size = _digest(ctx, path), path.stat().st_size
        old = copies.get(artifact)
        if old is not None and (old.sha256, old.path, old.size) == (sha, stored, size):
            continue
        key = work_key(ctx, job.id, artifact, sha, path.name)
        ctx.storage.put(path, key, content_type=CONTENT_TYPE, cache_control=CACHE_CONTROL,
                        sha256=sha)
        new.append(WorkingCopy(artifact, stored, key, sha, size))
        if old is not None and old.key != key:
            replaced.append(old.key)
    return new, replaced


def share_original(ctx: Context, job: Job) -> None:
    """The machine that ingested an episode stores its original for the workers (its sha256
    is the episode's: no second read of an hour-long recording to hash it)."""
    stored = job.files.get(Artifact.ORIGINAL)
    if stored is None:
        return
    copy = ctx.db.working_copies(job.id).get(Artifact.ORIGINAL)
    if copy is not None and copy.path == stored and ctx.storage.stat(copy.key) is not None:
        return
    path = ctx.workspace.abs(stored)
    if not path.is_file():
        raise PipelineError(f"the archived original {stored} of episode {job.id} is missing; "
                            "restore it from your backup (Learncast never deletes it), then "
                            f"run `learncast retry {job.id}`")
    key = work_key(ctx, job.id, Artifact.ORIGINAL, job.sha256, path.name)
    ctx.storage.put(path, key, content_type=CONTENT_TYPE, cache_control=CACHE_CONTROL,
                    sha256=job.sha256)
    ctx.db.copies_stored(job.id, [WorkingCopy(Artifact.ORIGINAL, stored, key, job.sha256,
                                              path.stat().st_size)])


def delete_keys(ctx: Context, job_id: str, keys: list[str]) -> None:
    """Delete working copies from storage (best effort: a leftover is only storage cost)."""
    gone = []
    for key in keys:
        try:
            ctx.storage.delete(key)
            gone.append(key)
        except PipelineError as exc:
            log.warning("[queue] could not delete working copy %s: %s", key, exc)
    if gone:
        ctx.db.drop_copies(job_id, gone)


def remove_copies(ctx: Context, job: Job) -> None:
    """The episode is done: its working copies go."""
    keys = [c.key for c in ctx.db.working_copies(job.id).values()]
    delete_keys(ctx, job.id, keys)
    if keys:
        log.info("[queue] %s: removed %d working copies from storage", job.id, len(keys))


def prune_workspace(ctx: Context) -> None:
    """A worker's own scratch files of episodes no longer in flight (published, failed,
    awaiting review): the working copies in storage are what counts."""
    ws = ctx.workspace
    if not ws.work.is_dir():
        return
    for folder in ws.work.iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        job = ctx.db.get(folder.name)
        if job is not None and job.status in (Status.QUEUED, Status.PROCESSING):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if (ws.archive / folder.name / FETCHED_MARK).is_file():
            with contextlib.suppress(OSError):
                shutil.rmtree(ws.archive / folder.name)
