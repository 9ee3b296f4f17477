"""`learncast`: the thin command-line layer. It parses, calls the runner, prints, and exits.

Exit codes: 0 all good, 1 some recordings failed (with a per-file summary), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline import __version__, runner
from pipeline.artifacts import grouped
from pipeline.errors import ConfigError, PipelineError, ToolError
from pipeline.ffmpeg import find_ffmpeg, require_ffmpeg
from pipeline.fsutil import display_name
from pipeline.models import Job, Status
from pipeline.review import service
from pipeline.state import StateStore, open_state
from pipeline.workspace import Context, init_workspace, open_workspace, resolve_root

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Piped output (scripts, CI logs) gets a wide fixed width instead of rich's 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("pipeline")


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    if err.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(level)


@contextmanager
def _session(args: argparse.Namespace, *, probe_ffmpeg: bool = True) -> Iterator[Context]:
    ws = open_workspace(resolve_root(args.workspace))
    ws.ensure()
    # Refuse an ffmpeg that cannot do the work now, not halfway through an episode. Commands
    # that run no ffmpeg (status, retry, publish, unpublish, failed) skip the probe, so they
    # still answer while the configured ffmpeg is broken.
    ffmpeg = (require_ffmpeg(ws.settings.ffmpeg.path, cache_dir=ws.state_db.parent)
              if probe_ffmpeg else find_ffmpeg(ws.settings.ffmpeg.path or None))
    db = open_state(ws)
    ctx = Context(workspace=ws, ffmpeg=ffmpeg, state=db)
    try:
        yield ctx
    finally:
        db.close()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """First SIGINT/SIGTERM: finish the current stage, then exit. Second: stop at once."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        log.warning("stopping after the current stage (%s again to stop now)",
                    signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def _progress() -> Iterator[runner.ProgressFn | None]:
    """A live per-episode progress display on a terminal; plain log lines otherwise."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    total = len(runner.STAGES)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stage]}"),
                  TimeElapsedColumn(), console=err, transient=False) as progress:

        def update(job: Job, stage: str, event: str,
                   amount: tuple[float, float] | None = None, /) -> None:
            if job.id not in tasks:
                tasks[job.id] = progress.add_task(f"{job.id} {escape(job.title[:30])}", total=total,
                                                  stage="")
            task = tasks[job.id]
            if event == "started":
                progress.update(task, stage=stage)
            elif event == "progress" and amount is not None:
                progress.update(task, stage=_stage_progress(stage, *amount))
            elif event == "done":
                progress.advance(task)
            elif event == "completed":
                progress.update(task, completed=total, stage=str(job.status))
            elif event in ("held", "failed"):  # the line stops here (and its clock with it)
                progress.update(task, stage=f"{job.status} at {stage}")
                progress.stop_task(task)

        yield update


def _review_url(ctx: Context, job_id: str | None = None) -> str:
    """Where `learncast review` (as configured in [review]) shows an episode."""
    cfg = ctx.settings.review
    host = "<this machine's address>" if cfg.host in ("0.0.0.0", "::") else cfg.host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{cfg.port}/" + (f"episodes/{job_id}" if job_id else "")


def _review_hint(ctx: Context, job_ids: list[str]) -> None:
    """The next step for episodes held by the review gate, which is not an error."""
    if not job_ids:
        return
    token = " (with the ?token=... link it prints)" if ctx.settings.review.token else ""
    out.print(f"\n{len(job_ids)} episode(s) wait for a reviewer's approval of their captions. "
              f"Next: run `learncast review`{token} and open", markup=False)
    for job_id in job_ids:
        out.print(f"  {_review_url(ctx, job_id)}", markup=False)
        job = ctx.db.get(job_id)
        note = service.live_note(ctx, job) if job is not None else None
        if note:  # edited after publishing: say which captions learners see meanwhile
            out.print(f"    {note}", markup=False)
    out.print("Approving queues the episode; the next `learncast run` (or a running "
              "`learncast watch`) publishes it.", markup=False)


def _stage_progress(stage: str, done: float, total: float) -> str:
    """`transcribe 42/120 s`: how far a long stage got, for the live display and `status`."""
    return f"{stage} {done:.0f}/{total:.0f} s"


def _print_report(report: runner.RunReport, ctx: Context | None = None) -> None:
    for r in report.ingested:
        if r.outcome == "rejected":
            out.print(f"[red]✘[/] {escape(r.name)}: rejected — {escape(r.message)}",
                      markup=True)
        elif r.outcome != "new":
            out.print(f"• {r.name}: {r.message}", markup=False)
    for o in report.processed:
        if o.error:
            out.print(f"[red]✘[/] {escape(o.source)} (episode {o.job_id}): failed — "
                      f"{escape(o.error)}",
                      markup=True)
        else:
            out.print(f"[green]✔[/] {escape(o.source)} → episode {o.job_id}: {o.status}",
                      markup=True)
    for name in report.left_pending:
        out.print(f"… {display_name(name)}: still being written; left in the inbox for the "
                  "next run", markup=False)
    if ctx is not None:
        _review_hint(ctx, [o.job_id for o in report.processed
                           if o.status is Status.AWAITING_REVIEW])


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser().resolve()
    owner = args.owner_email
    if owner is None and sys.stdin.isatty():
        owner = input("Show owner e-mail (podcast directories verify ownership with it; "
                      "Enter to skip): ").strip()
    config = init_workspace(root, owner_email=owner or "")
    out.print(f"Created workspace {root}\n  config: {config}\n  drop recordings into: "
              f"{root / 'inbox'}\n  then run: learncast --workspace {root} run")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    with _session(args) as ctx, _stop_on_signals() as stop, _progress() as progress:
        report = runner.process_inbox(ctx, stop=stop, on_progress=progress)
    _print_report(report, ctx)
    if not report.ingested and not report.processed:
        out.print("Nothing to do: the inbox is empty and no episode is waiting.")
    elif report.failures:
        out.print(f"\n{len(report.failures)} recording(s) failed; reasons are in "
                  f"{ctx.workspace.failed}/<name>.error.txt. Fix them and run "
                  "`learncast retry ID` or drop the files again.")
    return report.exit_code


def cmd_watch(args: argparse.Namespace) -> int:
    with _session(args) as ctx, _stop_on_signals() as stop, _progress() as progress:
        log.info("watching %s (Ctrl-C to stop)", ctx.workspace.inbox)
        runner.watch(ctx, stop, on_progress=progress,
                     on_report=lambda report: _print_report(report, ctx))
    return EXIT_OK


def _episode_dict(job: Job, ctx: Context,
                  progress: tuple[str, float, float] | None = None) -> dict[str, Any]:
    return {
        "id": job.id, "show": job.show, "title": job.title, "slug": job.slug,
        "source": job.source,
        "sha256": job.sha256, "kind": job.kind, "status": str(job.status), "stage": job.stage,
        "error": job.error, "duration_s": job.probe.duration_s if job.probe else None,
        "created_at": job.created_at.isoformat(),
        "files": grouped(job.files),
        "objects": grouped({a: o.model_dump() for a, o in job.objects.items()}),
        "results": job.results.model_dump(mode="json", exclude_none=True),
        "measurements": job.measurements,
        "live_captions_revision": service.live_revision(job),
        "progress": {"stage": progress[0], "done_s": round(progress[1], 1),
                     "total_s": round(progress[2], 1)} if progress else None,
    }


def cmd_status(args: argparse.Namespace) -> int:
    with _session(args, probe_ffmpeg=False) as ctx:
        jobs = ctx.db.all(show=args.show)
        running = ctx.db.running_progress()
        progress = {j.id: running[j.id] for j in jobs
                    if j.status == "processing" and j.id in running
                    and running[j.id][0] == j.stage}
        if args.json:
            sys.stdout.write(json.dumps([_episode_dict(j, ctx, progress.get(j.id))
                                         for j in jobs], indent=2) + "\n")
            return EXIT_OK
        if not jobs:
            out.print(f"No episodes yet. Drop recordings into {ctx.workspace.inbox} and run "
                      "`learncast run`.")
            return EXIT_OK
        table = Table()
        table.add_column("id", no_wrap=True)
        table.add_column("show", no_wrap=True)
        table.add_column("title", min_width=12, max_width=40)
        table.add_column("stage", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("duration", justify="right", no_wrap=True)
        table.add_column("error", max_width=60, overflow="ellipsis")
        colours = {"failed": "red", "published": "green", "awaiting-review": "yellow"}
        for j in jobs:
            dur = j.probe.duration_s if j.probe else None
            status = f"[{colours[j.status]}]{j.status}[/]" if j.status in colours else j.status
            live = service.live_revision(j)
            if live is not None and (j.status is not Status.PUBLISHED
                                     or live != service.revision(j)):
                status += f" (revision {live} live)"
            stage = _stage_progress(*progress[j.id]) if j.id in progress else j.stage or ""
            # titles and errors are the producer's text, never rich markup
            table.add_row(j.id, escape(j.show), escape(j.title), stage, status,
                          f"{int(dur // 60)}:{dur % 60:04.1f}" if dur is not None else "",
                          escape((j.error or "").split(". ")[0]))
        out.print(table)
        _review_hint(ctx, [j.id for j in jobs if j.status is Status.AWAITING_REVIEW])
    return EXIT_OK


def _one_episode(db: StateStore, prefix: str) -> Job:
    matches = db.find(prefix)
    if len(matches) != 1:
        what = "no episode" if not matches else f"{len(matches)} episodes"
        raise ConfigError(f"{what} with id starting '{prefix}'; see `learncast status`")
    return matches[0]


def cmd_retry(args: argparse.Namespace) -> int:
    with _session(args, probe_ffmpeg=False) as ctx:
        out.print(runner.retry(ctx, _one_episode(ctx.db, args.id), from_stage=args.from_stage))
    return EXIT_OK


def cmd_failed(args: argparse.Namespace) -> int:
    from pipeline import failures

    with _session(args, probe_ffmpeg=False) as ctx:
        notes = failures.door_rejections(ctx.workspace)
        if args.clear is not None:
            wanted = [n for n in notes if not args.clear or n.file.name == args.clear]
            if args.clear and not wanted:
                raise ConfigError(f"no rejected file named {args.clear!r} in "
                                  f"{ctx.workspace.failed}; see `learncast failed`")
            for note in wanted:
                failures.clear_rejection(note)
                out.print(f"removed {display_name(note.file.name)} and its note from "
                          f"{ctx.workspace.failed}", markup=False)
            return EXIT_OK
        if not notes:
            out.print(f"No rejected files in {ctx.workspace.failed}.")
        for note in notes:
            out.print(f"{display_name(note.file.name)}: {note.reason}", markup=False)
        if notes:
            out.print("\nFix and drop them into the inbox again, or remove them with "
                      "`learncast failed --clear [NAME]`.")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from pipeline.config import render_config, render_reference

    if args.reference:
        sys.stdout.write(render_reference())
        return EXIT_OK
    ws = open_workspace(resolve_root(args.workspace))
    sys.stdout.write(render_config(ws.settings))
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.feeds.publish import PublishError, publish_all

    failures: dict[str, str] = {}
    with _session(args, probe_ffmpeg=False) as ctx:
        if args.show and args.show not in ctx.settings.show_ids:
            raise ConfigError(f"no show {args.show!r}; configured shows: "
                              f"{', '.join(ctx.settings.show_ids)}")
        try:
            results = publish_all(ctx, shows=[args.show] if args.show else None)
        except PublishError as exc:
            results, failures = exc.results, exc.failures
    for r in results:
        state = "uploaded" if r.uploaded else "unchanged"
        out.print(f"{r.show} {r.kind} feed: {state}, {r.items} episode(s) → {r.url}")
    for show, reason in failures.items():
        out.print(f"[red]✘[/] {show}: not published — ", markup=True, end="")
        out.print(reason, markup=False)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.learners import PrivateGate
    from pipeline.serve import serve
    from pipeline.stats.logs import AccessLog

    ws = open_workspace(resolve_root(args.workspace))
    settings = ws.settings
    private = [s.id for s in settings.shows if s.private]
    s3 = settings.storage.backend == "s3"
    if s3 and not private:
        raise ConfigError(f"storage.backend is '{settings.storage.backend}'; `learncast "
                          "serve` only serves the local backend's folder (paths.public), and "
                          "the personal feeds of private shows (none is configured)")
    ws.ensure()
    db = open_state(ws)
    storage = None
    if s3:
        from pipeline.storage import open_storage

        storage = open_storage(ws)
    log_folder = ws.abs(settings.stats.access_log)
    access_log = AccessLog(log_folder, settings.stats.keep_days) if settings.stats.enabled \
        else None

    def ready(server: Any) -> None:
        what = "personal feeds of private shows" if s3 else str(ws.public)
        out.print(f"Serving {what} at {server.url}/ (Ctrl-C to stop)", markup=False)
        if private:
            out.print(f"private shows ({', '.join(private)}): only learners' personal URLs "
                      "(`learncast learners add`)", markup=False)
        if access_log is not None:
            out.print(f"access log (for `learncast stats`): {log_folder}", markup=False)

    try:
        serve(ws.public, args.host, args.port,
              public_base_url="" if s3 else settings.storage.public_base_url, on_ready=ready,
              gate=PrivateGate(settings, db, storage), access_log=access_log)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose "
                          "another with --host/--port") from exc
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        if access_log is not None:
            access_log.close()
        db.close()
    return EXIT_OK


def cmd_learners(args: argparse.Namespace) -> int:
    """`learncast learners add|list|revoke|import`: personal feeds of private shows."""
    import csv

    from pipeline import learners

    with _session(args, probe_ffmpeg=False) as ctx:
        db, settings = ctx.db, ctx.settings
        if args.action == "add":
            added = learners.add(db, settings, args.show, args.who, replace=args.replace)
            out.print(f"{added.learner.name} (learner {added.learner.id}) — personal feed:",
                      markup=False)
            out.print(f"  {added.urls['audio']}", markup=False)
            out.print(f"  video: {added.urls['video']}", markup=False)
            out.print("Send it to them privately; it is shown only now (Learncast keeps a "
                      "digest of it). `learncast learners revoke` stops it.", markup=False)
        elif args.action == "import":
            done = learners.import_csv(db, settings, args.show, Path(args.file))
            writer = csv.writer(sys.stdout)
            writer.writerow(["name", "learner", "feed", "video_feed"])
            for a in done.added:
                writer.writerow([a.learner.name, a.learner.id, a.urls["audio"], a.urls["video"]])
            for name, why in done.skipped:
                err.print(f"skipped {name}: {why}", markup=False)
            err.print(f"{len(done.added)} learner(s) added, {len(done.skipped)} skipped",
                      markup=False)
        elif args.action == "revoke":
            for gone in learners.revoke(db, settings, args.show, args.who):
                out.print(f"revoked {gone.name} (learner {gone.id}): their feed and media "
                          "stop working now" + (" (signed links already fetched expire "
                          f"within {settings.private.presign_seconds // 3600} h)"
                          if settings.storage.backend == "s3" else ""), markup=False)
        else:
            rows = learners.listing(db, args.show)
            if args.json:
                sys.stdout.write(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
                return EXIT_OK
            if not rows:
                out.print("No learners yet; add one with `learncast learners add SHOW EMAIL`.")
            table = Table()
            for col in ("learner", "show", "name", "added", "revoked"):
                table.add_column(col, no_wrap=col != "name")
            for r in rows:
                table.add_row(r.id, r.show, escape(r.name), r.created_at, r.revoked_at or "")
            if rows:
                out.print(table)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """`learncast stats`: downloads per episode, counted from the access logs."""
    from pipeline import stats

    with _session(args, probe_ffmpeg=False) as ctx:
        settings = ctx.settings
        if args.show and args.show not in settings.show_ids:
            raise ConfigError(f"no show {args.show!r}; configured shows: "
                              f"{', '.join(settings.show_ids)}")
        if settings.stats.enabled or settings.stats.s3_logs:
            stats.refresh(ctx)
        figures = stats.figures(ctx, show=args.show)
        if args.json:
            sys.stdout.write(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")
            return EXIT_OK
        if not settings.stats.enabled and not settings.stats.s3_logs:
            out.print("Listening figures are off: set [stats] enabled = true (and restart "
                      "`learncast serve`), or stats.s3_logs for S3; see the README's "
                      "Listening figures.", markup=False)
        table = Table()
        for col in ("show", "episode", "title", "downloads", "last 7 days"):
            table.add_column(col, no_wrap=col != "title",
                             justify="right" if col[0] in "dl" else "left")
        for f in figures:
            table.add_row(escape(f.show), f.episode_id, escape(f.title), str(f.total),
                          str(f.last_7_days))
        out.print(table)
        for f in figures:
            if args.learners and f.learners is not None:
                out.print(f"{f.episode_id} {f.title}: " + (", ".join(
                    f"{name} {n}" for name, n in f.learners.items()) or "no learner yet"),
                          markup=False)
    return EXIT_OK


def cmd_unpublish(args: argparse.Namespace) -> int:
    from pipeline.feeds.publish import unpublish

    with _session(args, probe_ffmpeg=False) as ctx:
        job = _one_episode(ctx.db, args.id)
        deleted = unpublish(ctx, job, delete_objects=args.delete_objects)
        out.print(f"episode {job.id} ({job.title}) unpublished; its show's feeds no longer "
                  "list it")
        for key in deleted:
            out.print(f"  deleted {key}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    from pipeline.queue.routing import QUEUES
    from pipeline.queue.worker import run_worker
    from pipeline.state import opened
    from pipeline.workspace import WORKSPACE_ENV

    ws = open_workspace(resolve_root(args.workspace))
    if not ws.settings.queue.url:
        raise ConfigError("queue.url is empty, so there is no queue to work for; set [queue] "
                          "url (or LEARNCAST_QUEUE__URL) to the Redis broker, e.g. "
                          "redis://broker:6379/0, and [state] url to the shared PostgreSQL")
    if not ws.settings.state.url:
        raise ConfigError("state.url is empty: a worker must share the state database with "
                          "`learncast run`; set [state] url (or LEARNCAST_STATE__URL) to "
                          "postgresql://user:password@host:5432/learncast")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise ConfigError(f"--queues {args.queues!r}: unknown queue(s) "
                          f"{', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(QUEUES)}")
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency {args.concurrency}: give 1 or more")
    ws.ensure()
    os.environ[WORKSPACE_ENV] = str(ws.root)  # the pool's processes open the same workspace
    with opened(ws):  # the schema is migrated (and the database reachable) before any task
        pass
    level = "WARNING" if args.quiet else "DEBUG" if args.verbose else "INFO"
    return run_worker(ws.settings, queues, args.concurrency, level)


def cmd_migrate(args: argparse.Namespace) -> int:
    from pipeline.state import display_url

    ws = open_workspace(resolve_root(args.workspace))
    ws.ensure()
    db = open_state(ws)
    try:
        where = display_url(db.url)
        if db.schema_before == db.schema_after:
            out.print(f"{where}: schema version {db.schema_after}, up to date")
        else:
            out.print(f"{where}: schema upgraded from version {db.schema_before} to "
                      f"{db.schema_after}")
        counts = db.counts()
        out.print("episodes: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                                  or "none"))
    finally:
        db.close()
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from pipeline.review.app import ReviewRequestHandler, create_app

    with _session(args) as ctx:
        cfg = ctx.settings.review
        host = args.host or cfg.host
        port = cfg.port if args.port is None else args.port
        app = create_app(ctx, ctx.db, host=host, token=cfg.token)
        try:
            server = make_server(host, port, app, threaded=True,
                                 request_handler=ReviewRequestHandler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose "
                              "another --port or stop what uses it") from None
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.server_port}/"
        out.print(f"Caption review for {ctx.workspace.root} at {url}"
                  + (f"?token={cfg.token}" if cfg.token else "")
                  + "\nPress Ctrl-C to stop.", markup=False)
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="learncast", description="Podcast and video production pipeline for L&D teams.")
    parser.add_argument("--version", action="version", version=f"learncast {__version__}")
    parser.add_argument("-w", "--workspace", help="workspace folder (default: "
                        "$LEARNCAST_WORKSPACE or the current folder)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=fn)
        return p

    p = add("init", cmd_init, "create a workspace with a documented default config")
    p.add_argument("dir", help="folder for the new workspace")
    p.add_argument("--owner-email", help="the first show's owner e-mail (itunes:owner, "
                   "podcast:locked owner); asked for when run in a terminal")
    add("run", cmd_run, "process everything in the inbox once, then exit")
    add("watch", cmd_watch, "keep processing the inbox until interrupted")
    p = add("status", cmd_status, "list episodes and where they are")
    p.add_argument("--json", action="store_true", help="machine-readable JSON array")
    p.add_argument("--show", help="only this show")
    p = add("retry", cmd_retry, "queue a failed episode again from its failed stage")
    p.add_argument("id", help="episode id (a unique prefix is enough)")
    p.add_argument("--from", dest="from_stage", metavar="STAGE",
                   help=f"redo from this stage ({', '.join(runner.stage_names())}); also for "
                   "episodes that did not fail")
    p = add("failed", cmd_failed, "list files rejected at the door (in failed/), or clear them")
    p.add_argument("--clear", nargs="?", const="", metavar="NAME",
                   help="remove this rejected file and its note (all of them without NAME)")
    p = add("config", cmd_config, "print the effective configuration (all layers applied)")
    p.add_argument("--reference", action="store_true",
                   help="print the reference of every key as Markdown instead")
    p = add("publish", cmd_publish, "rebuild every show's feeds and upload the changed ones")
    p.add_argument("--show", help="only this show")
    p = add("serve", cmd_serve, "serve the local storage folder over HTTP (ranges, CORS)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1; 0.0.0.0 for the whole network)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p = add("learners", cmd_learners, "personal feeds of private shows: add, list, revoke, "
            "import learners")
    lsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = lsub.add_parser("add", help="add a learner; prints their personal feed URL")
    q.add_argument("show", help="id of a private show")
    q.add_argument("who", metavar="EMAIL|NAME", help="the learner's e-mail address or name")
    q.add_argument("--replace", action="store_true",
                   help="they have a feed already: revoke it and issue a new one")
    q = lsub.add_parser("list", help="list learners (never their tokens)")
    q.add_argument("show", nargs="?", help="only this show")
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    q = lsub.add_parser("revoke", help="stop a learner's feed and media at once")
    q.add_argument("show", help="id of a private show")
    q.add_argument("who", metavar="EMAIL|NAME|ID", help="the learner (name or learner id)")
    q = lsub.add_parser("import", help="add the learners of a CSV file (column email or "
                        "name); prints a CSV of their personal feed URLs")
    q.add_argument("show", help="id of a private show")
    q.add_argument("file", help="CSV file")
    p = add("stats", cmd_stats, "downloads per episode, counted from the access logs")
    p.add_argument("--show", help="only this show")
    p.add_argument("--json", action="store_true", help="machine-readable JSON (with days)")
    p.add_argument("--learners", action="store_true",
                   help="also per learner, for private shows with learner_stats = true")
    p = add("unpublish", cmd_unpublish, "take an episode out of its show's feeds")
    p.add_argument("id", help="episode id (a unique prefix is enough)")
    p.add_argument("--delete-objects", action="store_true",
                   help="also delete its media, captions and chapters from storage")
    p = add("worker", cmd_worker, "run stage tasks from the queue ([queue] url) until "
            "SIGTERM, which finishes the current task first")
    p.add_argument("--queues", default="asr,media,publish",
                   help="comma-separated queues to take tasks from: asr (transcription), media "
                   "(ffmpeg work), publish (upload, feeds); default all")
    p.add_argument("--concurrency", type=int, default=1,
                   help="tasks at once, each in its own process with its own models (default 1)")
    add("migrate", cmd_migrate, "bring the state database's schema up to date (also done at "
        "start-up) and say where it stands")
    p = add("review", cmd_review, "the caption review web page (approve, edit captions)")
    p.add_argument("--host", help="address to listen on (default: [review] host, 127.0.0.1); "
                   "other than loopback needs LEARNCAST_REVIEW__TOKEN")
    p.add_argument("--port", type=int, help="port (default: [review] port, 8090; 0 = any free)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args))
    except (ConfigError, ToolError) as exc:  # the set-up, not a recording, is at fault
        err.print(f"learncast: {exc}", markup=False)
        return EXIT_USAGE
    except PipelineError as exc:
        err.print(f"learncast: {exc}", markup=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print("learncast: interrupted; unfinished stages resume on the next run")
        return 130
