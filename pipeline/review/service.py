"""What the review page does, without the web: read cues and flags, save edits, approve.

Kept apart from the Flask app so the gate stage, the CLI and the tests share one
implementation. Every write goes through `atomic_write_text`; every decision lands in the
state database's audit trail (`reviews`) before the episode's status changes, so the trail
never misses an action that took effect.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import CAPTION_FILES, Artifact
from pipeline.captions.qa import cue_speed
from pipeline.errors import InputError
from pipeline.fsutil import atomic_write_text, sha256_file
from pipeline.models import CaptionResult, ChapterMark, ChapterReview, Job, Status
from pipeline.review import cues as cuelib
from pipeline.review.cues import Cue
from pipeline.sidecar import Chapter
from pipeline.workspace import Context

log = logging.getLogger(__name__)

MODES = ("after-approval", "immediate")
#: Actions in the audit trail. `edit` rows record who changed the captions into a revision.
ACTIONS = ("approve", "request-changes", "edit", "chapters")
#: Statuses in which nobody else writes the episode, so a reviewer may change it.
EDITABLE = (Status.AWAITING_REVIEW, Status.PUBLISHED, Status.FAILED)
#: The media a reviewer watches, best first (deliverables, then intermediates in the same
#: deliverable time: the encoded files already carry the intro).
PLAYABLE = (Artifact.VIDEO, Artifact.AUDIO, Artifact.ENCODED_VIDEO, Artifact.ENCODED_AUDIO)
#: Stages that must run again when the captions change: the MP4 carries them in-file, the
#: audiogram burns them into its picture.
AFTER_EDIT = ["package", "review", "audiogram", "upload", "publish"]
#: ...of which these carry the captions themselves (redone even for a failed episode).
CARRY_CAPTIONS = ["package", "audiogram"]
#: Stages that must run again when a reviewer accepts or edits chapters (not the captions:
#: that would replace the reviewed caption revision).
AFTER_CHAPTERS = ["chapters", "package", "review", "audiogram", "upload", "publish"]
#: Audit-trail actions that decide on the captions (an edit or a chapter change does not).
DECISIONS = ("approve", "request-changes")
MAX_REVIEWER = 100
MAX_NOTE = 2000


class ConflictError(InputError):
    """The captions changed since the reviewer loaded the page."""


def review_mode(ctx: Context, job: Job) -> str:
    """The show's `review` setting, or the `[review]` default for the episode's kind."""
    try:
        mode = ctx.settings.show(job.show).review
    except KeyError:
        mode = "auto"
    if mode == "auto":
        return ctx.settings.review.video if job.kind == "video" else ctx.settings.review.audio
    return mode


def revision(job: Job) -> int:
    """Caption revision: 1 is the speech recogniser's output, each saved edit adds one."""
    return job.results.captions.revision if job.results.captions else 1


def local_path(ctx: Context, job: Job, artifact: Artifact) -> Path:
    """Where the episode's `artifact` is in this workspace. With a queue (`[queue] url`) the
    workers made it on other machines: it is fetched from its working copy first, when
    missing here or stale."""
    if ctx.settings.queue.url:
        from pipeline.queue import review as shared

        shared.fetch(ctx, job, (artifact,))
    return ctx.workspace.abs(job.files[artifact])


@contextlib.contextmanager
def _editing(ctx: Context, job_id: str) -> Iterator[Job]:
    """The episode locked for a check and the write that depends on it. With a queue, also
    its caption files current here before, stored back as working copies after, and an
    episode the write queued handed to the workers (`pipeline.queue.review.editing`)."""
    if ctx.settings.queue.url:
        from pipeline.queue import review as shared

        with shared.editing(ctx, job_id) as job:
            yield job
    else:
        with ctx.db.locked(job_id) as job:
            yield job


def captions_digest(ctx: Context, job: Job) -> str:
    """sha256 of the caption file as it is now ('' when there is none)."""
    if Artifact.VTT not in job.files or not local_path(ctx, job, Artifact.VTT).is_file():
        return ""
    return sha256_file(ctx.workspace.abs(job.files[Artifact.VTT]))


def approval(ctx: Context, job: Job) -> dict[str, Any] | None:
    """The approval that covers the current captions, or None.

    A decision applies to the revision it was made on, and to those exact bytes: an edit after
    an approval needs a new one, so does a caption file rewritten by anything else (a re-run
    of the caption stage); a later request for changes withdraws it.
    """
    decisions = [r for r in ctx.db.reviews(job.id) if r["action"] in DECISIONS]
    if decisions and decisions[-1]["action"] == "approve" \
            and decisions[-1]["revision"] == revision(job) \
            and decisions[-1]["captions_sha256"] == captions_digest(ctx, job):
        return decisions[-1]
    return None


def review_state(ctx: Context, job: Job) -> str:
    """One word for the list: needs-review, changes-requested, approved, published, ..."""
    if job.status is Status.PUBLISHED:
        return "published"
    if approval(ctx, job) is not None:
        return "approved"
    if job.status is Status.AWAITING_REVIEW and job.stage == "review":  # held by the gate
        decisions = [r for r in ctx.db.reviews(job.id) if r["action"] in DECISIONS]
        if decisions and decisions[-1]["action"] == "request-changes":
            return "changes-requested"
        return "needs-review"
    return str(job.status)


def live_revision(job: Job) -> int | None:
    """The caption revision learners see now: the one the feeds carry (None before the episode
    is first published). An edit of a published episode does not change it: the old captions
    stay live until the new revision is approved (where the show asks for that) and the
    episode is republished."""
    publication = job.results.publication
    if publication is None:
        return None
    if publication.captions_revision is not None:
        return publication.captions_revision
    review = job.results.review  # published before the feeds recorded their revision
    return review.revision if review is not None else None


def live_note(ctx: Context, job: Job) -> str | None:
    """One sentence on which captions learners see, when that is not the revision on the page
    (None when nothing is published, or the current revision is the live one)."""
    live = live_revision(job)
    if job.results.publication is None or (job.status is Status.PUBLISHED
                                           and live in (None, revision(job))):
        return None
    shown = f"revision {live}" if live is not None else "the previously published revision"
    current = revision(job)
    if live == current:
        return f"Learners see captions {shown} (published), the revision shown here."
    if job.status is Status.AWAITING_REVIEW and review_mode(ctx, job) == "after-approval":
        return (f"Learners see captions {shown} (published); revision {current} goes live "
                "once it is approved and the episode is republished.")
    return (f"Learners see captions {shown} (published) until revision {current} is "
            f"republished; the episode is {job.status}.")


# --- reading ----------------------------------------------------------------------------


def load_cues(ctx: Context, job: Job) -> list[Cue]:
    if Artifact.VTT not in job.files or not local_path(ctx, job, Artifact.VTT).is_file():
        raise InputError(f"episode {job.id} has no captions yet; they appear once the caption "
                         "stage has run")
    return cuelib.parse_vtt(ctx.workspace.abs(job.files[Artifact.VTT]).read_text(
        encoding="utf-8"))


def low_confidence_words(ctx: Context, job: Job) -> list[dict[str, Any]]:
    """Words the recogniser was unsure of: from the QA report, else the word-level JSON."""
    threshold = cuelib.low_confidence_threshold(ctx.settings)
    for key in (Artifact.QA, Artifact.WORDS):
        data = _read_json(ctx, job, key)
        if key is Artifact.QA and isinstance(data.get("low_confidence_words"), list):
            return [w for w in data["low_confidence_words"] if isinstance(w, dict)]
        if key is Artifact.WORDS and isinstance(data.get("words"), list):
            return [w for w in data["words"] if isinstance(w, dict)
                    and float(w.get("probability", 1.0)) < threshold]
    return []


def _read_json(ctx: Context, job: Job, key: Artifact) -> dict[str, Any]:
    if key not in job.files:
        return {}
    try:
        data = json.loads(local_path(ctx, job, key).read_text(encoding="utf-8"))
    except (OSError, ValueError, InputError):
        return {}
    return data if isinstance(data, dict) else {}


def _bare(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


@dataclass
class CueRow:
    """One cue as the page shows it."""

    index: int
    start: float
    end: float
    speaker: str | None
    lines: list[list[tuple[str, bool]]]  # per line: (word, low confidence?)
    text: str
    chars: list[int]
    cps: float
    flags: list[dict[str, Any]] = field(default_factory=list)

    @property
    def severity(self) -> str:
        kinds = {f["severity"] for f in self.flags}
        return "error" if "error" in kinds else "warning" if kinds else "ok"


def cue_rows(cues: list[Cue], issues: list[dict[str, Any]],
             low_words: list[dict[str, Any]]) -> list[CueRow]:
    rows = []
    for k, cue in enumerate(cues):
        unsure = {_bare(str(w.get("word", ""))) for w in low_words
                  if cue.start - 0.05 <= float(w.get("start", -1)) < cue.end + 0.05}
        lines = [[(word, _bare(word) in unsure) for word in line.split()] for line in cue.lines]
        flags = [i for i in issues if i["cue"] == k + 1]
        flags += [{"rule": "low_confidence", "severity": "warning", "value": w, "limit": ""}
                  for line in lines for w, low in line if low]
        rows.append(CueRow(k, cue.start, cue.end, cue.speaker, lines, "\n".join(cue.lines),
                           [len(line) for line in cue.lines], round(cue_speed(cue)[0], 1),
                           flags))
    return rows


def qa_figures(cues: list[Cue], issues: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [i for i in issues if i["severity"] == "error"]
    cps = cuelib.distribution([cue_speed(c)[0] for c in cues])
    return {
        "caption_cues": len(cues),
        "caption_violations": len(errors),
        "caption_warnings": len(issues) - len(errors),
        "caption_conformance": round(1 - len({i["cue"] for i in errors}) / len(cues), 4)
        if cues else 1.0,
        "reading_cps_median": cps.get("median", 0.0),
        "reading_cps_max": cps.get("max", 0.0),
    }


def summary(ctx: Context, job: Job) -> dict[str, Any]:
    """The list page's row: review state and a caption QA summary from the current files."""
    row: dict[str, Any] = {"job": job, "state": review_state(ctx, job),
                           "mode": review_mode(ctx, job), "revision": revision(job),
                           "live_revision": live_revision(job), "has_captions": False}
    try:
        cues = load_cues(ctx, job)
    except InputError:
        return row
    issues = cuelib.check_cues(cues, cuelib.profile_for(ctx.settings))
    row.update(has_captions=True, low_words=len(low_confidence_words(ctx, job)),
               **qa_figures(cues, issues))
    return row


def media_artifact(job: Job) -> Artifact | None:
    return next((k for k in PLAYABLE if k in job.files), None)


# --- writing ----------------------------------------------------------------------------


def _check_reviewer(reviewer: str) -> str:
    reviewer = " ".join(reviewer.split())
    if not reviewer:
        raise InputError("type your name in 'Reviewer' so the audit trail says who did this")
    if len(reviewer) > MAX_REVIEWER:
        raise InputError(f"the reviewer name is longer than {MAX_REVIEWER} characters; "
                         "shorten it")
    return reviewer


def _check_fresh(job: Job, expected: int) -> None:
    if expected != revision(job):
        raise ConflictError(f"the captions of episode {job.id} changed since you opened the "
                            f"page (you saw revision {expected}, now {revision(job)}); reload "
                            "the page and redo your change")


def _target(ctx: Context, job: Job, key: Artifact, suffix: str) -> Path:
    stored = job.files.get(key)
    if stored:
        return ctx.workspace.abs(stored)
    return ctx.workspace.transcripts / job.show / f"{job.slug}.{suffix}"


def save_cues(ctx: Context, job_id: str, cues: list[Cue], *, reviewer: str,
              expected_revision: int, what: str) -> Job:
    """Write edited cues as a new caption revision, and queue whatever must be republished.

    The revision check and the write are one step under the state store's write lock: of two
    reviewers saving the same revision, exactly one succeeds and the other is told to reload;
    an approval racing an edit either covers the old revision (and the edit then withdraws
    it) or is refused as stale.
    """
    reviewer = _check_reviewer(reviewer)
    if not cues:
        raise InputError("the captions would have no cues left; keep at least one")
    cuelib.check_writable(cues)
    with _editing(ctx, job_id) as job:
        _check_fresh(job, expected_revision)
        if job.status not in EDITABLE:
            raise InputError(f"episode {job.id} is {job.status}: the pipeline is working on it. "
                             "Wait until it is awaiting review or published, then edit")
        return _write_revision(ctx, job, cues, reviewer=reviewer, what=what)


def _write_revision(ctx: Context, job: Job, cues: list[Cue], *, reviewer: str,
                    what: str) -> Job:
    ws, db = ctx.workspace, ctx.db
    vtt_path = _target(ctx, job, Artifact.VTT, "vtt")
    if Artifact.ASR_VTT not in job.files and vtt_path.is_file():
        original = vtt_path.with_name(f"{job.slug}.asr.vtt")
        atomic_write_text(original, vtt_path.read_text(encoding="utf-8"))
        job = job.with_file(Artifact.ASR_VTT, ws.rel(original))
    renders = {Artifact.VTT: cuelib.render_vtt(cues), Artifact.SRT: cuelib.render_srt(cues),
               Artifact.TXT: cuelib.render_txt(cues, job.title),
               Artifact.HTML: cuelib.render_html(cues, job.title, _language(ctx, job))}
    for key in CAPTION_FILES:
        path = _target(ctx, job, key, key.value)
        atomic_write_text(path, renders[key])
        job = job.with_file(key, ws.rel(path))
    new_revision = revision(job) + 1
    profile = cuelib.profile_for(ctx.settings)
    issues = cuelib.check_cues(cues, profile)
    figures = qa_figures(cues, issues)
    data = _read_json(ctx, job, Artifact.WORDS)
    if data:
        data.update(cues=cuelib.cues_json(cues), caption_revision=new_revision)
        _speakers_of_words(data.get("words"), cues)
        atomic_write_text(ws.abs(job.files[Artifact.WORDS]),
                          json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    qa = _read_json(ctx, job, Artifact.QA)
    qa.update(profile=profile.name, cues=len(cues), conformance=figures["caption_conformance"],
              violations=[i for i in issues if i["severity"] == "error"],
              warnings=[i for i in issues if i["severity"] == "warning"],
              caption_revision=new_revision)
    qa.setdefault("reading_speed", {})["cps"] = cuelib.distribution(
        [cue_speed(c)[0] for c in cues])
    qa_path = _target(ctx, job, Artifact.QA, "qa.json")
    atomic_write_text(qa_path, json.dumps(qa, ensure_ascii=False, indent=1) + "\n")
    job = job.with_file(Artifact.QA, ws.rel(qa_path))
    asr_words = [w for c in cuelib.parse_vtt(ws.abs(job.files[Artifact.ASR_VTT]).read_text(
        encoding="utf-8")) for w in c.text.split()] if Artifact.ASR_VTT in job.files else []
    now_words = [w for c in cues for w in c.text.split()]
    distance = cuelib.word_edit_distance(asr_words, now_words)
    captions = job.results.captions or CaptionResult(profile=profile.name,
                                                     language=_language(ctx, job))
    job = job.with_results(captions=captions.model_copy(update={"revision": new_revision}))
    job = job.with_measurements(
        review_edit_distance_words=distance, review_asr_words=len(asr_words),
        review_edit_rate=round(distance / len(asr_words), 4) if asr_words else 0.0,
        **figures)
    job = _after_change(ctx, job)
    db.save(job)
    db.add_review(job.id, reviewer, "edit", new_revision, what, captions_digest(ctx, job))
    db.event(job.id, "edited", f"captions revision {new_revision} by {reviewer}: {what}")
    log.info("[review] %s: captions revision %d saved by %s (%s); %d word edit(s) from the "
             "recognised text", job.id, new_revision, reviewer, what, distance)
    return job


def _speakers_of_words(words: Any, cues: list[Cue]) -> None:
    """Words in the word-level JSON take the speaker of the cue they fall in, so a renamed or
    reassigned speaker is renamed there too."""
    if not isinstance(words, list) or not any(c.speaker for c in cues):
        return
    starts = [c.start for c in cues]
    for word in words:
        if not isinstance(word, dict):
            continue
        try:
            middle = (float(word["start"]) + float(word["end"])) / 2
        except (KeyError, TypeError, ValueError):
            continue
        k = bisect.bisect_right(starts, middle) - 1
        if k >= 0 and middle <= cues[k].end and cues[k].speaker:
            word["speaker"] = cues[k].speaker


def _language(ctx: Context, job: Job) -> str:
    try:
        return ctx.settings.show(job.show).language
    except KeyError:
        return "en"


def _after_change(ctx: Context, job: Job) -> Job:
    """Captions changed: the MP4 is packaged again (it carries them); a published episode
    republishes them (immediate) or waits for a new approval first (after-approval). Upload
    re-sends only changed files. A failed episode stays failed, but whatever it retries
    includes the new captions."""
    db = ctx.db
    mode = review_mode(ctx, job)
    if job.status is Status.FAILED:
        db.reset_stages(job.id, AFTER_EDIT if mode == "after-approval" else CARRY_CAPTIONS)
        return job
    if job.status is Status.AWAITING_REVIEW:
        db.reset_stages(job.id, AFTER_EDIT)
        return job.replace(stage="package" if mode == "immediate" else "review")
    if mode == "immediate":
        db.reset_stages(job.id, AFTER_EDIT)
        db.event(job.id, "republish", "edited captions are packaged, uploaded and the feed "
                 "rebuilt")
        return job.replace(status=Status.QUEUED, stage="package", error=None)
    db.reset_stages(job.id, AFTER_EDIT)
    return job.replace(status=Status.AWAITING_REVIEW, stage="review", error=None)


def decide(ctx: Context, job_id: str, *, action: str, reviewer: str, expected_revision: int,
           note: str = "") -> Job:
    """Approve the current captions or request changes, recorded in the audit trail.

    Approving an episode held by the gate queues it again, so the runner goes on to package,
    upload and publish; a request for changes keeps it waiting, with the note for whoever edits
    next. Checked and recorded under the store's write lock, like an edit.
    """
    if action not in ("approve", "request-changes"):
        raise InputError(f"unknown review action {action!r}; use approve or request-changes")
    reviewer = _check_reviewer(reviewer)
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise InputError(f"the note is longer than {MAX_NOTE} characters; shorten it")
    if action == "request-changes" and not note:
        raise InputError("say what needs to change in 'Note' when requesting changes")
    db = ctx.db
    with _editing(ctx, job_id) as job:
        _check_fresh(job, expected_revision)
        if job.status not in EDITABLE:
            raise InputError(f"episode {job.id} is {job.status}: the pipeline is working on "
                             "it; wait until it is awaiting review")
        db.add_review(job.id, reviewer, action, revision(job), note, captions_digest(ctx, job))
        db.event(job.id, action, f"captions revision {revision(job)} by {reviewer}"
                 + (f": {note}" if note else ""))
        log.info("[review] %s: %s revision %d by %s", job.id, action, revision(job), reviewer)
        if action == "approve" and job.status is Status.AWAITING_REVIEW \
                and not chapters_pending(job):
            job = job.replace(status=Status.QUEUED, error=None)
            db.save(job)
        return job


# --- chapters -----------------------------------------------------------------------------


def chapters_pending(job: Job) -> bool:
    """Whether the episode's chapters were suggested and no reviewer has accepted them (an
    accepted list replaces the suggestions when the chapters stage runs next)."""
    return job.results.chapter_review is None and any(
        m.suggested for m in job.results.chapters or [])


def chapters_digest(job: Job) -> str:
    """A fingerprint of the chapters as the page shows them (to refuse a stale form)."""
    marks = [m.model_dump(mode="json") for m in chapter_rows(job)]
    return hashlib.sha256(json.dumps(marks, sort_keys=True).encode()).hexdigest()[:16]


def chapter_rows(job: Job) -> list[ChapterMark]:
    """The chapters a reviewer sees and edits: the listed ones (the intro and opening marks
    are made again from the timeline). Once a reviewer has saved chapters, those — placed in
    the deliverables — even before the chapters stage has run again."""
    review = job.results.chapter_review
    if review is None:
        return [m for m in job.results.chapters or [] if m.toc]
    place = job.timeline.to_deliverable
    return [ChapterMark(start=round(place(c.start), 3), end=round(place(c.start), 3),
                        title=c.title) for c in review.chapters]


def save_chapters(ctx: Context, job_id: str, rows: list[tuple[float, str]], *, reviewer: str,
                  expected: str) -> Job:
    """Accept (or edit) the chapters: `rows` are (start in the deliverables, title) as the
    reviewer saw and typed them. They are kept in recording time, like a sidecar's, and the
    chapters stage places them through the Timeline into every deliverable."""
    reviewer = _check_reviewer(reviewer)
    if not rows:
        raise InputError("keep at least one chapter; to publish without chapters, remove "
                         "them from the sidecar instead")
    chapters: list[Chapter] = []
    with _editing(ctx, job_id) as job:
        if chapters_digest(job) != expected:
            raise ConflictError(f"the chapters of episode {job.id} changed since you opened "
                                "the page; reload it and redo your change")
        if job.status not in EDITABLE:
            raise InputError(f"episode {job.id} is {job.status}: the pipeline is working on it. "
                             "Wait until it is awaiting review or published, then edit")
        timeline = job.timeline
        for start, title in sorted(rows):
            title = " ".join(title.split())
            if not title or len(title) > 200:
                raise InputError(f"the chapter at {start:.1f} s needs a title of 1 to 200 "
                                 "characters")
            content = min(max(start - timeline.intro_s, 0.0), timeline.content_duration_s)
            at = round(timeline.content_to_recording(content), 3)
            if chapters and at <= chapters[-1].start:
                raise InputError(f"the chapters “{chapters[-1].title}” and “{title}” start at "
                                 "the same moment of the episode; give them different times "
                                 "or remove one")
            chapters.append(Chapter(start=at, title=title))
        review = ChapterReview(chapters=chapters, reviewer=reviewer,
                               at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        job = job.with_results(chapter_review=review)
        ctx.db.reset_stages(job.id, AFTER_CHAPTERS)
        if job.status is not Status.FAILED:
            go = review_mode(ctx, job) == "immediate" or approval(ctx, job) is not None
            job = job.replace(status=Status.QUEUED if go else Status.AWAITING_REVIEW,
                              stage="chapters" if go else "review", error=None)
        ctx.db.save(job)
        summary = "; ".join(f"{c.start:.1f} s {c.title}" for c in chapters)
        ctx.db.add_review(job.id, reviewer, "chapters", revision(job), summary[:MAX_NOTE],
                          captions_digest(ctx, job))
        ctx.db.event(job.id, "chapters", f"{len(chapters)} chapter(s) accepted by {reviewer}")
        log.info("[review] %s: %d chapter(s) accepted by %s", job.id, len(chapters), reviewer)
        return job
