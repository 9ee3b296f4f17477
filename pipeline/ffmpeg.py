"""The ffmpeg binary: which one runs, whether it can do what the pipeline asks, and what it
said when it failed.

One binary does all processing: the build bundled in the `imageio-ffmpeg` wheel, unless
`[ffmpeg] path` names another (`system` = `ffmpeg` on PATH). Distribution builds differ in
version, options and encoders, so the chosen binary is probed once at start-up against
`NEEDS`, the one declared list of what the pipeline uses, and refused with a message naming
what is missing — instead of an episode failing halfway with ffmpeg's noise. Code that starts
using a filter, option, encoder or format adds it to `NEEDS`.

Every run goes through `popen`/`run` here, for three reasons: stderr is streamed, so an hour
of log lines is never held in memory; a failure quotes ffmpeg's *first* error line (the one
that says why; the last ones only say that it failed); and a binary that cannot be started or
dies of a signal raises `ToolError` — the tool's fault, never the recording's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pipeline.errors import ConfigError, PipelineError, ToolError
from pipeline.fsutil import atomic_write_text

log = logging.getLogger(__name__)

#: The oldest ffmpeg the whole pipeline was run end to end with (Debian 12's 5.1).
MIN_VERSION = (5, 1)

Kind = Literal["filter", "encoder", "decoder", "muxer", "demuxer", "library"]


@dataclass(frozen=True)
class Need:
    """One thing the pipeline asks of ffmpeg, and what for (shown when it is missing).

    `options` are names of the component's options; `option=value` also requires that named
    value (a constant such as `framelog=verbose`). A `library` need is an external library
    the build must be configured with (`--enable-libsoxr`), for features whose names are
    listed even when the library behind them is absent.
    """

    kind: Kind
    name: str
    why: str
    options: tuple[str, ...] = ()


#: Everything the pipeline uses. Keep it complete: the start-up probe is only as good as this.
NEEDS: tuple[Need, ...] = (
    # loudness (audio/loudness.py: measure, plan_gain; review/plots.py)
    Need("filter", "ebur128", "measuring loudness",
         ("peak=true", "framelog=verbose", "framelog=info")),
    Need("filter", "volume", "the loudness gain", ("precision=double",)),
    Need("filter", "alimiter", "the true-peak limiter",
         ("limit", "attack", "release", "level", "latency")),
    Need("filter", "aresample", "resampling", ("resampler=soxr", "precision")),
    Need("library", "libsoxr", "resampling with the SoX resampler (aresample resampler=soxr)"),
    # trim (stages/trim.py)
    Need("filter", "atrim", "cutting the audio", ("start", "end")),
    Need("filter", "asetpts", "cutting the audio"),
    Need("filter", "concat", "joining cut pieces and bumper pictures", ("n", "v", "a")),
    Need("filter", "select", "cutting the picture"),
    Need("filter", "setpts", "cutting the picture"),
    # encode (stages/encode.py)
    Need("filter", "acrossfade", "crossfading bumpers", ("d", "c1=tri", "c2=tri")),
    Need("filter", "aformat", "the deliverables' channel layout", ("channel_layouts",)),
    Need("filter", "scale", "fitting the picture", ("w", "h", "force_original_aspect_ratio")),
    Need("filter", "pad", "fitting the picture"),
    Need("filter", "setsar", "fitting the picture"),
    Need("filter", "fps", "bumper pictures"),
    Need("filter", "format", "bumper pictures"),
    Need("filter", "trim", "bumper pictures", ("duration",)),
    Need("filter", "tpad", "keeping picture and sound in sync",
         ("start_duration", "start_mode=clone")),
    Need("encoder", "libmp3lame", "the MP3"),
    Need("encoder", "aac", "the MP4's sound"),
    Need("encoder", "libx264", "the MP4's picture", ("preset", "crf")),
    Need("encoder", "mov_text", "the MP4's subtitle track"),
    Need("encoder", "flac", "the lossless working copies"),
    Need("encoder", "pcm_f32le", "decoding sound for trim, transcription and the review page"),
    Need("encoder", "pcm_s16le", "measuring"),
    Need("decoder", "flac", "reading the working copies"),
    Need("decoder", "mp3", "re-measuring the MP3"),
    Need("decoder", "aac", "re-measuring the MP4"),
    Need("decoder", "h264", "cutting and copying the picture"),
    Need("decoder", "png", "show artwork behind audio-only bumpers"),
    Need("decoder", "mjpeg", "show artwork behind audio-only bumpers"),
    Need("decoder", "webvtt", "the MP4's subtitle track"),
    Need("muxer", "mp3", "the MP3", ("id3v2_version", "write_xing")),
    Need("muxer", "mp4", "the MP4", ("movflags=faststart",)),
    Need("muxer", "flac", "the lossless working copies"),
    Need("muxer", "f32le", "decoding sound for trim, transcription and the review page"),
    Need("muxer", "null", "measuring"),
    Need("demuxer", "flac", "reading the working copies"),
    Need("demuxer", "mov", "reading the cut picture and the MP4"),
    Need("demuxer", "mp3", "re-measuring the MP3"),
    Need("demuxer", "image2", "show artwork behind audio-only bumpers"),
    Need("demuxer", "webvtt", "the MP4's subtitle track"),
    Need("demuxer", "ffmetadata", "the MP4's chapters"),
)

_LIST_FLAG = {"filter": "-filters", "encoder": "-encoders", "decoder": "-decoders",
              "muxer": "-muxers", "demuxer": "-demuxers"}
#: Bump when what a cached probe result means changes.
_CACHE_FORMAT = 1
CACHE_FILE = "ffmpeg-probe.json"
_PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Capabilities:
    """What the start-up probe learnt about one binary that passed it."""

    path: str
    version: str  # as the binary prints it, e.g. "5.1.9-0+deb12u1"
    #: How to read a filter graph from a file: `-/filter_complex` (ffmpeg >= 7; 8 dropped the
    #: old option) or `-filter_complex_script` (older).
    filter_script_option: str
    seconds: float = field(default=0.0, compare=False)  # what the probe cost


# --- finding the binary --------------------------------------------------------------------


def find_ffmpeg(configured: str | None = None) -> str:
    """Resolve the ffmpeg binary: the bundled one unless `[ffmpeg] path` says otherwise.

    The bundled build (imageio-ffmpeg) is the one every test runs against, so it is the
    default even when another ffmpeg is on PATH: a producer's distribution ffmpeg may lack
    options or encoders the pipeline uses. `system` takes `ffmpeg` from PATH; anything else
    is a path (or a command name) to run.
    """
    if configured == "system":
        on_path = shutil.which("ffmpeg")
        if not on_path:
            raise ConfigError("ffmpeg.path = 'system' but there is no `ffmpeg` on PATH; "
                              "install one, or clear [ffmpeg] path to use the bundled ffmpeg")
        return on_path
    if configured:
        path = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if not path:
            raise ConfigError(
                f"ffmpeg.path = {configured!r} does not exist or is not executable; fix "
                "[ffmpeg] path in config/learncast.toml (or LEARNCAST_FFMPEG__PATH) or clear "
                "it to use the bundled ffmpeg"
            )
        return path
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def is_bundled(ffmpeg: str) -> bool:
    return "imageio_ffmpeg" in Path(ffmpeg).parts


def _fix(ffmpeg: str) -> str:
    """What to do about a binary that cannot do the job."""
    if is_bundled(ffmpeg):
        return ("Reinstall the bundled ffmpeg (`make setup`, or `pip install --force-reinstall "
                "imageio-ffmpeg`), or set [ffmpeg] path to a working ffmpeg "
                f"{_version_text(MIN_VERSION)} or newer")
    return ("Clear [ffmpeg] path (config/learncast.toml or LEARNCAST_FFMPEG__PATH) to use the "
            "bundled ffmpeg, or repair or reinstall that ffmpeg")


# --- running it ----------------------------------------------------------------------------

#: Lines of stderr kept for the debug log and for messages.
_TAIL_LINES = 20
_MAX_ERROR_LINES = 100
_MAX_KEPT_LINES = 200
_ERROR_TAG = re.compile(r"\[(?:error|fatal|panic)\] ")
_CONTEXT = re.compile(r"^(?:\[[^\]]*\]\s*)+")


def command(ffmpeg: str, args: list[str], *, loglevel: str = "error") -> list[str]:
    """The full command line. `level+` tags every log line with its severity (`[error]`), so
    errors are found by tag, not by guessing from the wording (5.1 and 9.0 alike)."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", f"level+{loglevel}",
            *args]


def popen(ffmpeg: str, args: list[str], *, what: str, loglevel: str = "error",
          **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ffmpeg; a binary that cannot be executed raises ToolError."""
    cmd = command(ffmpeg, args, loglevel=loglevel)
    log.debug("ffmpeg: %s", shlex.join(cmd))
    try:
        return subprocess.Popen(cmd, **kwargs)
    except OSError as exc:
        raise ToolError(f"ffmpeg ({ffmpeg}) cannot be started while {what}: "
                        f"{exc.strerror or exc}. {_NOT_THE_RECORDING}{_fix(ffmpeg)}, then run "
                        "learncast again") from exc


_NOT_THE_RECORDING = ("This is a fault of the ffmpeg binary, not of the recording: nothing was "
                      "rejected, and the recording stays in the inbox or the queue. ")


def strip_context(line: str) -> str:
    """`[mp3float @ 0x55d2] [error] Header missing` → `Header missing`."""
    return _CONTEXT.sub("", line).strip()


@dataclass
class Log:
    """What ffmpeg printed, bounded: its first error lines, the last lines, and (optionally)
    everything after the last line containing `keep_after` (ebur128's summary)."""

    keep_after: str | None = None
    #: Called with every line as it arrives (ebur128's frame log is parsed this way, never
    #: held whole).
    on_line: Callable[[str], None] | None = None
    errors: list[str] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    kept: list[str] = field(default_factory=list)

    def feed(self, raw: bytes | str) -> None:
        line = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).rstrip()
        if self.on_line is not None:
            self.on_line(line)
        self.tail.append(line)
        if _ERROR_TAG.search(line) and len(self.errors) < _MAX_ERROR_LINES:
            self.errors.append(line)
        if self.keep_after is not None and self.keep_after in line:
            self.kept = [line]
        elif self.kept and len(self.kept) < _MAX_KEPT_LINES:
            self.kept.append(line)

    def read(self, stream: Iterable[bytes]) -> Log:
        for raw in stream:
            self.feed(raw)
        return self

    @property
    def first_error(self) -> str:
        """ffmpeg's first error line, without its `[component @ 0x...] [error]` prefixes;
        else its last line; ffmpeg's later lines mostly say only that it gave up."""
        line = self.errors[0] if self.errors else next(
            (t for t in reversed(self.tail) if t.strip()), "")
        return strip_context(line)[:300] or "ffmpeg printed no error message"


@dataclass
class Result:
    returncode: int
    log: Log

    @property
    def first_error(self) -> str:
        return self.log.first_error

    def error(self, what: str) -> PipelineError:
        return PipelineError(f"ffmpeg failed while {what}: {self.first_error} "
                             f"(exit {self.returncode})")


def check_ran(ffmpeg: str, returncode: int, output: Log, *, what: str) -> None:
    """Raise ToolError when the binary itself failed rather than the work it was given: it
    died of a signal (a crash, or the kernel's out-of-memory killer), or the system could not
    run it (126/127: e.g. a shared library is missing). ffmpeg's own errors exit 1, or 8,
    183, 254... (a negated error code), never 126/127."""
    if returncode < 0:
        name = _signal_name(returncode)
        oom = (" (often the kernel's out-of-memory killer: check the machine's free memory)"
               if -returncode == signal.SIGKILL else "")
        raise ToolError(f"ffmpeg ({ffmpeg}) was killed by {name} while {what}{oom}. "
                        f"{_NOT_THE_RECORDING}{_fix(ffmpeg)}, then run learncast again")
    if returncode in (126, 127):
        raise ToolError(f"ffmpeg ({ffmpeg}) could not run while {what}: {output.first_error} "
                        f"(exit {returncode}). {_NOT_THE_RECORDING}{_fix(ffmpeg)}, then run "
                        "learncast again")


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run(ffmpeg: str, args: list[str], *, what: str, loglevel: str = "error",
        keep_after: str | None = None, stdout: int | IO[bytes] | None = None,
        on_line: Callable[[str], None] | None = None) -> Result:
    """Run ffmpeg to the end, streaming its stderr into a bounded `Log`.

    Returns whatever it exited with (callers judge ffmpeg's own failures); raises ToolError
    when the binary could not run or was killed.
    """
    proc = popen(ffmpeg, args, what=what, loglevel=loglevel,
                 stdout=subprocess.DEVNULL if stdout is None else stdout,
                 stderr=subprocess.PIPE)
    with proc:
        assert proc.stderr is not None
        output = Log(keep_after, on_line).read(proc.stderr)
    result = Result(proc.returncode, output)
    if result.returncode != 0:
        log.debug("ffmpeg exited %d while %s; its last lines:\n%s", result.returncode, what,
                  "\n".join(output.tail))
    check_ran(ffmpeg, result.returncode, output, what=what)
    return result


def run_ffmpeg(ffmpeg: str, args: list[str], *, what: str, loglevel: str = "error",
               keep_after: str | None = None,
               on_line: Callable[[str], None] | None = None) -> Result:
    """Run ffmpeg quietly (overwriting outputs); on failure raise a PipelineError quoting
    ffmpeg's first error line, or ToolError when the binary itself failed."""
    result = run(ffmpeg, ["-y", *args], what=what, loglevel=loglevel, keep_after=keep_after,
                 on_line=on_line)
    if result.returncode != 0:
        raise result.error(what)
    return result


def filter_complex_file(ffmpeg: str, script: Path) -> list[str]:
    """Arguments that read a `-filter_complex` graph from `script` (long graphs exceed the
    command-line limit), in the spelling this ffmpeg understands."""
    return [capabilities(ffmpeg).filter_script_option, str(script)]


# --- the start-up probe --------------------------------------------------------------------

_probed: dict[str, Capabilities] = {}
_probe_lock = threading.Lock()


def require_ffmpeg(configured: str | None, *, cache_dir: Path | None = None) -> str:
    """The ffmpeg to run, after checking once that it can do everything in `NEEDS`.

    Raises ConfigError (the CLI exits 2) naming what is missing and what to do. The result
    for a binary that passed is cached in `cache_dir`, keyed by its path, size and mtime (and
    `NEEDS`), so later processes skip the probe.
    """
    path = find_ffmpeg(configured or None)
    capabilities(path, cache_dir=cache_dir, configured=configured or "")
    return path


def capabilities(ffmpeg: str, *, cache_dir: Path | None = None,
                 configured: str = "") -> Capabilities:
    """Probe `ffmpeg` (once per process and binary); ConfigError if it falls short."""
    with _probe_lock:
        known = _probed.get(ffmpeg)
        if known is not None:
            return known
        key = _cache_key(ffmpeg)
        caps = _read_cache(cache_dir, key) if cache_dir and key else None
        if caps is None:
            caps, problems = probe(ffmpeg)
            if problems:
                raise ConfigError(_refusal(ffmpeg, configured, caps.version, problems))
            log.info("ffmpeg %s (%s) has everything Learncast needs (probed in %.2f s)",
                     caps.version, ffmpeg, caps.seconds)
            if cache_dir and key:
                _write_cache(cache_dir, key, caps)
        _probed[ffmpeg] = caps
        return caps


def probe(ffmpeg: str) -> tuple[Capabilities, list[str]]:
    """Ask `ffmpeg` for its version, components and their options; list what `NEEDS` lacks."""
    started = time.monotonic()
    kinds = sorted({n.kind for n in NEEDS if n.kind in _LIST_FLAG})
    help_for = sorted({(n.kind, n.name) for n in NEEDS if n.options})
    try:
        version, configuration = _version(ffmpeg)
        with ThreadPoolExecutor(max_workers=4) as pool:  # each answer is a process start
            lists = dict(zip(kinds, pool.map(
                lambda k: _names(_ask(ffmpeg, _LIST_FLAG[k])), kinds), strict=True))
            helps = dict(zip(help_for, pool.map(
                lambda kn: _options(_ask(ffmpeg, "-h", f"{kn[0]}={kn[1]}")), help_for),
                strict=True))
            long_help = _ask(ffmpeg, "-h", "long")
    except _Unusable as exc:
        return Capabilities(ffmpeg, "unknown", "", time.monotonic() - started), [str(exc)]
    problems: list[str] = []
    parsed = _parse_version(version)
    if parsed is None:
        log.info("ffmpeg %s at %s: a development build; its version cannot be compared, "
                 "only its features were checked", version, ffmpeg)
    elif parsed < MIN_VERSION:
        problems.append(f"it is version {version}; Learncast needs "
                        f"{_version_text(MIN_VERSION)} or newer")
    for need in NEEDS:
        if need.kind == "library":
            if f"--enable-{need.name}" not in configuration:
                problems.append(f"it was built without {need.name} (needed for {need.why})")
            continue
        if need.name not in lists[need.kind]:
            problems.append(f"{need.kind} {need.name} is missing (needed for {need.why})")
            continue
        options = helps.get((need.kind, need.name), {})
        for spec in need.options:
            name, _, value = spec.partition("=")
            if name not in options or (value and value not in options[name]):
                problems.append(f"{need.kind} {need.name} lacks option {spec} "
                                f"(needed for {need.why})")
    script = ("-filter_complex_script" if "-filter_complex_script" in long_help
              else "-/filter_complex")
    seconds = round(time.monotonic() - started, 3)
    return Capabilities(ffmpeg, version, script, seconds), problems


class _Unusable(Exception):
    """The binary does not answer like an ffmpeg at all."""


def _ask(ffmpeg: str, *args: str) -> str:
    cmd = [ffmpeg, "-hide_banner", *args]
    asked = f"`ffmpeg {' '.join(args)}`"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise _Unusable(f"it did not answer {asked} within {_PROBE_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise _Unusable(f"it cannot be started: {exc.strerror or exc}") from None
    if proc.returncode < 0:
        raise _Unusable(f"it was killed by {_signal_name(proc.returncode)} when asked {asked}")
    if proc.returncode in (126, 127):
        raise _Unusable(f"it cannot run: {Log().read(proc.stderr.splitlines()).first_error}")
    return proc.stdout


def _version(ffmpeg: str) -> tuple[str, str]:
    """(version, configuration line) from `ffmpeg -version`."""
    text = _ask(ffmpeg, "-version")
    match = re.search(r"^ffmpeg version (\S+)", text, re.M)
    if not match:
        raise _Unusable("it does not answer `-version` like ffmpeg does; is it ffmpeg?")
    config = re.search(r"^configuration:(.*)$", text, re.M)
    return match[1], config[1] if config else ""


def _parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of "5.1.9-0+deb12u1", "n9.0.2-17-g2a571b6", "7.1"; None for git
    snapshots ("N-112345-g...")."""
    match = re.match(r"n?(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def _version_text(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


def _names(listing: str) -> set[str]:
    """Component names from `-filters`/`-encoders`/`-muxers`...: the word after the flags
    column; demuxers may list several names ("mov,mp4,m4a,...")."""
    names: set[str] = set()
    for line in listing.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1] != "=" and re.fullmatch(r"[A-Z.|d]+", words[0]):
            names.update(words[1].split(","))
    return names


_OPTION = re.compile(r"^(\s{1,4})-?([\w:-]+)\s+\[?<[^>]+>")
_CONSTANT = re.compile(r"^(\s+)([\w-]+)\s+(?:\S+\s+)?[.A-Z]{10,}(?:\s|$)")


def _options(text: str) -> dict[str, set[str]]:
    """Options of one component from `-h filter=NAME` (or encoder=, muxer=), each with the
    named values listed under it."""
    options: dict[str, set[str]] = {}
    current: tuple[str, int] | None = None
    for line in text.splitlines():
        if match := _OPTION.match(line):
            current = (match[2], len(match[1]))
            options.setdefault(match[2], set())
        elif current and (match := _CONSTANT.match(line)) and len(match[1]) > current[1]:
            options[current[0]].add(match[2])
    return options


def _refusal(ffmpeg: str, configured: str, version: str, problems: list[str]) -> str:
    which = ("the bundled ffmpeg" if not configured else
             "`ffmpeg` on PATH" if configured == "system" else f"ffmpeg.path = {configured!r}")
    listed = "\n".join(f"  - {p}" for p in problems)
    if is_bundled(ffmpeg):
        advice = _fix(ffmpeg)
    else:
        missing = [n.name for n in NEEDS if n.kind in ("encoder", "library") and (
            f"encoder {n.name} is missing" in listed or f"without {n.name}" in listed)]
        advice = ("Clear [ffmpeg] path (config/learncast.toml or LEARNCAST_FFMPEG__PATH) to "
                  f"use the bundled ffmpeg, or install an ffmpeg {_version_text(MIN_VERSION)} "
                  "or newer" + (f" built with {', '.join(missing)}" if missing else ""))
    return (f"{which} ({ffmpeg}, version {version}) cannot run the pipeline:\n{listed}\n"
            f"{advice}.")


# --- the cache of probe results ------------------------------------------------------------


def _needs_digest() -> str:
    text = repr((_CACHE_FORMAT, MIN_VERSION, NEEDS))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_key(ffmpeg: str) -> dict[str, Any] | None:
    """Identity of a binary: real path, size, mtime — plus what was asked of it."""
    try:
        real = os.path.realpath(ffmpeg)
        st = os.stat(real)
    except OSError:
        return None
    return {"path": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "needs": _needs_digest()}


def _read_cache(cache_dir: Path, key: dict[str, Any]) -> Capabilities | None:
    try:
        entry = json.loads((cache_dir / CACHE_FILE).read_text())[key["path"]]
        if entry["key"] != key:
            return None
        return Capabilities(**entry["capabilities"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, stale or unreadable: probe again


def _write_cache(cache_dir: Path, key: dict[str, Any], caps: Capabilities) -> None:
    path = cache_dir / CACHE_FILE
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[key["path"]] = {"key": key, "capabilities": asdict(caps)}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entries, indent=2) + "\n")
    except OSError as exc:  # a read-only state folder only costs the next process a probe
        log.debug("could not cache the ffmpeg probe in %s: %s", path, exc)
