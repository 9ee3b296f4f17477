"""Where everything lives, and the per-process context stages receive."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import CONFIG_RELPATH, Settings, load_settings, render_config
from pipeline.errors import ConfigError
from pipeline.fsutil import atomic_write_text

if TYPE_CHECKING:
    from pipeline.artifacts import Artifact
    from pipeline.state import StateStore
    from pipeline.storage import StorageBackend

WORKSPACE_ENV = "LEARNCAST_WORKSPACE"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Workspace:
    root: Path
    settings: Settings

    def _path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def inbox(self) -> Path:
        return self._path(self.settings.paths.inbox)

    @property
    def archive(self) -> Path:
        return self._path(self.settings.paths.archive)

    @property
    def work(self) -> Path:
        return self._path(self.settings.paths.work)

    @property
    def failed(self) -> Path:
        return self._path(self.settings.paths.failed)

    @property
    def transcripts(self) -> Path:
        return self._path(self.settings.paths.transcripts)

    @property
    def feeds(self) -> Path:
        return self._path(self.settings.paths.feeds)

    @property
    def public(self) -> Path:
        return self._path(self.settings.paths.public)

    @property
    def state_db(self) -> Path:
        return self._path(self.settings.paths.state)

    @property
    def assets(self) -> Path:
        return self.root / "assets"

    @property
    def claims(self) -> Path:
        return self.work / ".claims"

    def job_dir(self, job_id: str) -> Path:
        return self.work / job_id

    def rel(self, path: Path) -> str:
        """Workspace-relative form for the state database (absolute if outside)."""
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path.resolve())

    def abs(self, stored: str) -> Path:
        return self._path(stored)

    def ensure(self) -> None:
        for folder in (self.inbox, self.archive, self.work, self.failed, self.transcripts,
                       self.feeds, self.public, self.state_db.parent, self.claims):
            folder.mkdir(parents=True, exist_ok=True)


def resolve_root(cli_value: str | None) -> Path:
    raw = cli_value or os.environ.get(WORKSPACE_ENV) or "."
    return Path(raw).expanduser().resolve()


def open_workspace(root: Path, overrides: dict[str, Any] | None = None) -> Workspace:
    if not root.is_dir():
        raise ConfigError(f"workspace {root} does not exist; create one with "
                          f"`learncast init {root}` or pass --workspace")
    return Workspace(root=root, settings=load_settings(root, overrides=overrides))


def init_workspace(root: Path, *, owner_email: str = "") -> Path:
    """Create a workspace with a documented config; refuse to overwrite an existing config.

    `owner_email` goes into the first show: directories verify ownership with it, and Podcast
    Index's parser ignores `podcast:locked` without an owner."""
    config = root / CONFIG_RELPATH
    if config.exists():
        raise ConfigError(f"{config} already exists; not overwriting it. Edit it, or choose "
                          "an empty folder for a new workspace")
    settings = Settings()
    if owner_email:
        if not EMAIL.fullmatch(owner_email):
            raise ConfigError(f"owner e-mail {owner_email!r} is not an e-mail address; give "
                              "one like podcasts@example.com, or leave it out")
        first = settings.shows[0].model_copy(update={"owner_email": owner_email})
        settings = settings.model_copy(update={"shows": [first, *settings.shows[1:]]})
    config.parent.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root=root, settings=settings)
    for folder in (ws.inbox, ws.assets, ws.transcripts, ws.feeds):
        folder.mkdir(parents=True, exist_ok=True)
    # Placeholder show artwork meeting Apple's rules, so the first feed validates; replace it.
    artwork = ws.root / ws.settings.shows[0].artwork
    if not artwork.exists():
        artwork.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).parent / "data" / "artwork.png", artwork)
    atomic_write_text(config, render_config(settings))
    return config


def no_progress(done: float, total: float) -> None:
    """The default `Context.progress`: nobody is listening."""


@dataclass
class Context:
    """Per-process resources handed to every stage: its world, so a stage needs nothing else.

    `state` is the episode store, `storage` the publishing backend (created on first use and
    kept in `resources` with the other heavy objects, such as the whisper model, so stages stay
    free of module-level globals). `inputs` is set by the runner for each stage call: the paths
    of the artifacts the stage declared it needs or uses, already checked to exist.
    `progress(done, total)` is how a long stage says how far it got (transcribe: seconds of
    audio); the runner points it at the live display and the state store.
    """

    workspace: Workspace
    ffmpeg: str
    resources: dict[str, Any] = field(default_factory=dict)
    state: StateStore | None = None
    inputs: Mapping[Artifact, Path] = field(default_factory=dict)
    progress: Callable[[float, float], None] = no_progress

    @property
    def settings(self) -> Settings:
        return self.workspace.settings

    @property
    def storage(self) -> StorageBackend:
        backend = self.resources.get("storage")
        if backend is None:
            from pipeline.storage import open_storage

            backend = self.resources["storage"] = open_storage(self.workspace)
        return backend

    @property
    def db(self) -> StateStore:
        if self.state is None:
            raise RuntimeError("this context has no state store; the runner or the CLI sets it")
        return self.state

    def input(self, artifact: Artifact) -> Path:
        """The resolved path of an input the running stage declared (KeyError: not declared
        or, for an optional input, not present)."""
        return self.inputs[artifact]

    def has_input(self, artifact: Artifact) -> bool:
        return artifact in self.inputs
