"""The caption review web app (Flask, server-rendered, no front-end build).

Safe by default: `learncast review` binds to 127.0.0.1 and then accepts only loopback Host
headers (no DNS rebinding); bound anywhere else it refuses to start without a token. A token
must be long and random (refused at start-up otherwise), is compared in constant time, never
reaches the access log, and a client address that sends too many wrong ones is locked out for
a while (429). Every state-changing request carries a per-session CSRF token and a same-origin
check. Templates autoescape, and the Content-Security-Policy forbids inline script, so
transcript text such as `<script>` can only ever render as text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlencode, urlsplit

from flask import (
    Flask,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException, TooManyRequests
from werkzeug.serving import WSGIRequestHandler

from pipeline.artifacts import SOUNDBITES, Artifact
from pipeline.captions.writers import timestamp as caption_timestamp
from pipeline.errors import ConfigError, InputError, PipelineError
from pipeline.media import probe
from pipeline.models import Job, Status
from pipeline.review import cues as cuelib
from pipeline.review import service
from pipeline.state import StateStore
from pipeline.workspace import Context

log = logging.getLogger(__name__)

FILTERS = {
    "all": "All episodes",
    "needs-review": "Needs review",
    "approved": "Approved",
    "published": "Published",
}
MEDIA_TYPES = {"vtt": "text/vtt"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")


#: The reviewer's name, asked once and kept in this browser (not secret: it goes into the audit
#: trail), so it outlives the session cookie, whose key changes when `learncast review` restarts.
REVIEWER_COOKIE = "learncast_reviewer"
REVIEWER_COOKIE_AGE_S = 180 * 24 * 3600

#: A token must be at least this long and use this many different characters: a guessable one
#: on a page reachable from the network is worse than none, since it looks safe.
MIN_TOKEN_CHARS = 32
MIN_TOKEN_DISTINCT = 8
MAKE_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


def token_problem(token: str) -> str | None:
    """Why `token` is too weak to protect the page, or None when it will do."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"is {len(token)} characters long; it needs at least {MIN_TOKEN_CHARS}"
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return (f"uses only {len(set(token))} different characters; a random one uses at "
                f"least {MIN_TOKEN_DISTINCT}")
    return None


class TokenGuard:
    """Locks a client address out after too many wrong tokens (answered 429 meanwhile).

    Without it anyone who can reach the page may guess as fast as the server answers (about
    700 guesses a second on one connection). After `max_failures` wrong tokens within
    `window_s` the address is locked out for `lockout_s`, the right token included; a right
    token clears the count. IPv6 clients count per /64, the block one host usually holds. At most
    `max_clients` addresses are remembered (the oldest are forgotten). `clock` is for tests.
    """

    def __init__(self, *, max_failures: int = 10, window_s: float = 600.0,
                 lockout_s: float = 600.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_clients, self.clock = max_clients, clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def client(address: str | None) -> str:
        try:
            ip = ipaddress.ip_address((address or "").split("%")[0])
        except ValueError:
            return address or "?"
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def wait(self, client: str) -> float:
        """Seconds `client` is still locked out (0: it may try)."""
        with self._lock:
            until = self._locked.get(client, 0.0)
            left = until - self.clock()
            if left <= 0 and until:
                del self._locked[client]
            return max(left, 0.0)

    def failed(self, client: str) -> None:
        """Record a wrong token; the `max_failures`-th within the window locks `client` out."""
        with self._lock:
            now = self.clock()
            recent = [t for t in self._failures.pop(client, []) if now - t < self.window_s]
            recent.append(now)
            if len(recent) >= self.max_failures:
                self._locked[client] = now + self.lockout_s
                return
            self._failures[client] = recent
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def redact_tokens(text: str) -> str:
    """`?token=...` in a logged request line → `?token=[redacted]` (however the name is
    encoded: Flask decodes `%74oken` to `token` too)."""
    if "?" not in text:
        return text
    head, _, rest = text.partition("?")
    query, space, tail = rest.partition(" ")
    parts = []
    for part in query.split("&"):
        name = part.split("=", 1)[0]
        parts.append(f"{name}=[redacted]" if unquote_plus(name).strip() == "token" else part)
    return f"{head}?{'&'.join(parts)}{space}{tail}"


class ReviewRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, with the review token blanked out of every log line."""

    def log(self, type: str, message: str, *args: Any) -> None:
        super().log(type, message, *(redact_tokens(a) if isinstance(a, str) else a
                                     for a in args))


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(ctx: Context, db: StateStore, *, host: str = "127.0.0.1",
               token: str = "", guard: TokenGuard | None = None) -> Flask:
    """The app for one workspace. `host` is where it listens: loopback without a token only
    answers loopback Host names; any other address needs `token`. `guard` counts wrong
    tokens per client (a fresh TokenGuard unless given)."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"the review page would listen on {host}, reachable from other "
                         "machines, without a token; set LEARNCAST_REVIEW__TOKEN (or [review] "
                         f"token) to a long random value, made with: {MAKE_TOKEN}; or use "
                         "--host 127.0.0.1")
    weak = token_problem(token) if token else None
    if weak:
        raise ConfigError(f"the review token (review.token / LEARNCAST_REVIEW__TOKEN) {weak}; "
                          f"set a random one, made with: {MAKE_TOKEN}")
    tokens = guard or TokenGuard()
    token_digest = hashlib.sha256(token.encode()).digest()
    ctx = dataclasses.replace(ctx, state=db)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="learncast_review",
        MAX_CONTENT_LENGTH=1 << 20,
    )
    loopback_only = is_loopback(host) and not token

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return str(session["csrf"])

    app.jinja_env.globals.update(csrf_token=csrf_token, timestamp=caption_timestamp,
                                 FILTERS=FILTERS)

    @app.before_request
    def guard() -> Response | None:
        if loopback_only:
            name = urlsplit(f"//{request.host}").hostname or ""
            if not is_loopback(name):
                abort(400, "this review page answers only on localhost/127.0.0.1; open it "
                           "through that address")
        if token:
            supplied = request.args.get("token") or _bearer()
            if supplied is not None:
                client = TokenGuard.client(request.remote_addr)
                wait = tokens.wait(client)
                if not wait:
                    digest = hashlib.sha256(supplied.encode("utf-8", "surrogatepass")).digest()
                    if hmac.compare_digest(digest, token_digest):
                        tokens.succeeded(client)
                    else:
                        tokens.failed(client)
                        abort(401, "the token is wrong; use the link `learncast review` "
                                   "printed")
                if wait:
                    raise TooManyRequests(
                        f"too many wrong tokens from your address ({tokens.max_failures} "
                        f"within {tokens.window_s / 60:.0f} minutes); try again in "
                        f"{math.ceil(wait / 60)} minute(s) with the link `learncast review` "
                        "printed",
                        retry_after=max(1, round(wait)))
                session["auth"] = True
                if request.method == "GET" and "token" in request.args:
                    rest = {k: v for k, v in request.args.items() if k != "token"}
                    return redirect(request.path + (f"?{urlencode(rest)}" if rest else ""),
                                    code=303)
            elif not session.get("auth"):
                abort(401, "this review page needs its access token; open the link that "
                           "`learncast review` printed (it ends in ?token=...)")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin and origin != "null" and urlsplit(origin).netloc != request.host:
                abort(403, "this request came from another site, so it was refused")
            sent = request.form.get("csrf_token", "")
            if not sent or "csrf" not in session or not hmac.compare_digest(
                    sent.encode(), str(session["csrf"]).encode()):
                abort(403, "the form's security token is missing or stale; reload the page "
                           "and try again")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
        retry = {k: v for k, v in exc.get_headers() if k == "Retry-After"}
        return render_template("error.html", code=exc.code, name=exc.name,
                               message=exc.description), exc.code or 500, retry

    def job_or_404(job_id: str) -> Job:
        job = db.get(job_id)
        if job is None:
            abort(404, f"there is no episode {job_id}; go back to the list")
        return job

    @app.get("/")
    def index() -> str:
        wanted = request.args.get("filter", "all")
        if wanted not in FILTERS:
            wanted = "all"
        rows = [service.summary(ctx, job) for job in db.all()]
        counts = {key: sum(1 for r in rows if key == "all" or _matches(r, key))
                  for key in FILTERS}
        rows = [r for r in rows if wanted == "all" or _matches(r, wanted)]
        return render_template("list.html", rows=rows, current=wanted, counts=counts)

    def render_episode(job: Job, error: str | None = None, status: int = 200,
                       ) -> tuple[str, int]:
        cues: list[cuelib.Cue] = []
        missing = None
        try:
            cues = service.load_cues(ctx, job)
        except InputError as exc:
            missing = str(exc)
        profile = cuelib.profile_for(ctx.settings)
        issues = cuelib.check_cues(cues, profile)
        rows = service.cue_rows(cues, issues, service.low_confidence_words(ctx, job))
        media = service.media_artifact(job)
        return render_template(
            "episode.html", job=job, rows=rows, profile=profile, error=error, missing=missing,
            media=media, is_video=media is not None and "video" in media,
            figures=service.qa_figures(cues, issues) if cues else {},
            state=service.review_state(ctx, job), mode=service.review_mode(ctx, job),
            revision=service.revision(job), reviews=list(reversed(db.reviews(job.id))),
            paragraphs=cuelib.paragraphs(cues), reviewer=current_reviewer(),
            live_note=service.live_note(ctx, job),
            speakers=cuelib.speakers(cues),
            editable=job.status in service.EDITABLE, language=_language(job),
            has_trim=job.results.trim is not None,
            has_loudness=Artifact.MASTER_AUDIO in job.files,
            chapters=service.chapter_rows(job), chapters_digest=service.chapters_digest(job),
            chapters_pending=service.chapters_pending(job),
            soundbites=[(a.value, b) for a, b in zip(SOUNDBITES, job.results.soundbites or [],
                                                     strict=False) if a in job.files],
        ), status

    @app.get("/episodes/<job_id>")
    def episode(job_id: str) -> tuple[str, int]:
        return render_episode(job_or_404(job_id))

    @app.get("/episodes/<job_id>/media/<artifact>")
    def media(job_id: str, artifact: str) -> Response:
        job = job_or_404(job_id)
        if artifact not in (*service.PLAYABLE, *SOUNDBITES, "vtt") \
                or artifact not in job.files:
            abort(404, f"episode {job_id} has no {artifact} file")
        try:  # with a queue, fetched from the episode's working copy
            path = service.local_path(ctx, job, Artifact(artifact))
        except InputError as exc:
            abort(503, str(exc))
        if not path.is_file():
            abort(404, f"{job.files[artifact]} is missing on disk")
        response = send_file(path, mimetype=MEDIA_TYPES.get(artifact), conditional=True,
                             max_age=0)
        if artifact == "vtt":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/episodes/<job_id>/plots/<name>.svg")
    def plot(job_id: str, name: str) -> Response:
        from pipeline.review import plots

        job = job_or_404(job_id)
        if name not in plots.PLOTS:
            abort(404, f"there is no plot {name!r}")
        try:
            svg = plots.PLOTS[name](ctx, job)
        except InputError as exc:
            abort(404, str(exc))
        return Response(svg, mimetype="image/svg+xml",
                        headers={"Cache-Control": "no-store"})

    def form_int(name: str) -> int:
        try:
            return int(request.form.get(name, ""))
        except ValueError:
            abort(400, f"the form field {name!r} must be a whole number; reload the page")

    def current_reviewer() -> str:
        """The name this browser gave once ('' until it has)."""
        name = session.get("reviewer") or unquote(request.cookies.get(REVIEWER_COOKIE, ""))
        return " ".join(str(name).split())[:service.MAX_REVIEWER]

    def remember_reviewer(name: str) -> None:
        name = " ".join(name.split())[:service.MAX_REVIEWER]
        if name:
            session["reviewer"] = g.reviewer = name

    @app.after_request
    def reviewer_cookie(response: Response) -> Response:
        if getattr(g, "reviewer", None):
            response.set_cookie(REVIEWER_COOKIE, quote(g.reviewer), max_age=REVIEWER_COOKIE_AGE_S,
                                httponly=True, samesite="Strict")
        return response

    def reviewer_of() -> str | None:
        """Who makes this change: the page's one name (a form may still send its own)."""
        sent = request.form.get("reviewer", "")
        if sent.strip():
            remember_reviewer(sent)
            return sent
        return current_reviewer() or None

    NO_REVIEWER = ("say who you are first: type your name in 'Reviewing as' at the top of the "
                   "episode page and save it (asked once), then make the change again")

    @app.post("/reviewer")
    def set_reviewer() -> Any:
        name = " ".join(request.form.get("reviewer", "").split())
        back = request.form.get("next", "")
        if not back.startswith("/") or back.startswith("//") or "\\" in back:
            back = url_for("index")
        if not name:
            abort(400, "type your name in 'Reviewing as' so the audit trail says who made "
                       "each change")
        if len(name) > service.MAX_REVIEWER:
            abort(400, f"the reviewer name is longer than {service.MAX_REVIEWER} characters; "
                       "go back and shorten it")
        remember_reviewer(name)
        flash(f"You review as {name}; every change you make is recorded under this name, "
              "and this browser remembers it.")
        return redirect(back + "#reviewer", code=303)

    def changed(job_id: str, change: Any, what: str, anchor: int | str) -> Any:
        job = job_or_404(job_id)
        reviewer = reviewer_of()
        if reviewer is None:
            return render_episode(job, NO_REVIEWER, 400)
        try:
            cues = change(service.load_cues(ctx, job))
            job = service.save_cues(ctx, job.id, cues, reviewer=reviewer,
                                    expected_revision=form_int("revision"), what=what)
        except service.ConflictError as exc:
            return render_episode(job, str(exc), 409)
        except InputError as exc:
            return render_episode(job, str(exc), 400)
        flash(f"Saved: {what}. Captions are now revision {service.revision(job)}.")
        return redirect(url_for("episode", job_id=job.id, _anchor=anchor if isinstance(
            anchor, str) else f"cue-{anchor + 1}"), code=303)

    def media_duration(job: Job) -> float | None:
        """Length of the media the reviewer plays (the captions' timeline), if readable."""
        artifact = service.media_artifact(job)
        if artifact is None:
            return None
        try:
            return probe(service.local_path(ctx, job, artifact)).duration_s or None
        except (PipelineError, OSError):
            return None

    @app.post("/episodes/<job_id>/cues/<int:number>/edit")
    def edit_cue(job_id: str, number: int) -> Any:
        try:
            start = cuelib.parse_time(request.form.get("start", ""))
            end = cuelib.parse_time(request.form.get("end", ""))
        except InputError as exc:
            return render_episode(job_or_404(job_id), f"cue {number}: {exc}", 400)
        text = request.form.get("text", "")
        duration = media_duration(job_or_404(job_id))
        return changed(job_id, lambda cues: cuelib.edit(cues, number - 1, text=text,
                                                        start=start, end=end,
                                                        duration=duration),
                       f"edited cue {number}", number - 1)

    @app.post("/episodes/<job_id>/cues/<int:number>/split")
    def split_cue(job_id: str, number: int) -> Any:
        after = form_int("after_word")
        limit = cuelib.profile_for(ctx.settings).max_chars_per_line
        return changed(job_id, lambda cues: cuelib.split(cues, number - 1, after, limit),
                       f"split cue {number} after word {after}", number - 1)

    @app.post("/episodes/<job_id>/cues/<int:number>/merge")
    def merge_cue(job_id: str, number: int) -> Any:
        limit = cuelib.profile_for(ctx.settings).max_chars_per_line
        return changed(job_id, lambda cues: cuelib.merge(cues, number - 1, limit),
                       f"merged cue {number} with cue {number + 1}", number - 1)

    @app.post("/episodes/<job_id>/speakers/rename")
    def rename_speaker(job_id: str) -> Any:
        old = request.form.get("speaker", "")
        new = " ".join(request.form.get("name", "").split())
        return changed(job_id, lambda cues: cuelib.rename_speaker(cues, old, new),
                       f"renamed speaker {old} to {new}", "speakers")

    @app.post("/episodes/<job_id>/cues/<int:number>/speaker")
    def cue_speaker(job_id: str, number: int) -> Any:
        speaker = request.form.get("speaker", "")
        return changed(job_id, lambda cues: cuelib.reassign(cues, number - 1, speaker),
                       f"cue {number} said by {' '.join(speaker.split())}", number - 1)

    @app.post("/episodes/<job_id>/chapters")
    def chapters(job_id: str) -> Any:
        job = job_or_404(job_id)
        reviewer = reviewer_of()
        if reviewer is None:
            return render_episode(job, NO_REVIEWER, 400)
        rows: list[tuple[float, str]] = []
        try:
            for n in range(1, min(form_int("count"), 500) + 2):
                title = request.form.get(f"title-{n}", "").strip()
                start = request.form.get(f"start-{n}", "").strip()
                if request.form.get(f"remove-{n}") or (not title and not start):
                    continue
                rows.append((cuelib.parse_time(start), title))
            job = service.save_chapters(ctx, job.id, rows, reviewer=reviewer,
                                        expected=request.form.get("digest", ""))
        except service.ConflictError as exc:
            return render_episode(job, str(exc), 409)
        except InputError as exc:
            return render_episode(job, f"chapters: {exc}", 400)
        flash(f"Saved {len(rows)} chapter(s); they go into the MP3, the MP4 and the chapters "
              "file when the episode is next processed.")
        return redirect(url_for("episode", job_id=job.id, _anchor="chapters"), code=303)

    @app.post("/episodes/<job_id>/decision")
    def decision(job_id: str) -> Any:
        job = job_or_404(job_id)
        reviewer = reviewer_of()
        if reviewer is None:
            return render_episode(job, NO_REVIEWER, 400)
        action = request.form.get("action", "")
        try:
            job = service.decide(ctx, job.id, action=action, reviewer=reviewer,
                                 expected_revision=form_int("revision"),
                                 note=request.form.get("note", ""))
        except service.ConflictError as exc:
            return render_episode(job, str(exc), 409)
        except InputError as exc:
            return render_episode(job, str(exc), 400)
        if action == "approve":
            nxt = ("the workers upload and publish it now." if ctx.settings.queue.url else
                   "`learncast run` or a running `learncast watch` uploads and publishes it.")
            flash(f"Approved captions revision {service.revision(job)}. "
                  + (f"The episode is queued: {nxt}" if job.status is Status.QUEUED else ""))
        else:
            flash("Changes requested; the episode keeps waiting for review.")
        return redirect(url_for("episode", job_id=job.id, _anchor="decision"), code=303)

    @app.get("/stats")
    def listening() -> str:
        """Listening figures per show: downloads per episode, a plot of each."""
        from pipeline import stats

        cfg = ctx.settings.stats
        problem = None
        if cfg.enabled or cfg.s3_logs:
            try:
                stats.refresh(ctx)
            except PipelineError as exc:  # the logs unreadable: show what is stored
                problem = str(exc)
        figures = stats.figures(ctx)
        learners = {s.id: sum(1 for r in db.learners(s.id) if not r["revoked_at"])
                    for s in ctx.settings.shows if s.private and s.learner_stats}
        shows = [(s, [f for f in figures if f.show == s.id]) for s in ctx.settings.shows]
        return render_template("stats.html", shows=shows, learners=learners,
                               enabled=cfg.enabled or bool(cfg.s3_logs), problem=problem)

    def _language(job: Job) -> str:
        try:
            return ctx.settings.show(job.show).language
        except KeyError:
            return "en"

    return app


def _matches(row: dict[str, Any], key: str) -> bool:
    if key == "needs-review":
        return row["state"] in ("needs-review", "changes-requested")
    return bool(row["state"] == key)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None
