"""Notifications end to end: events recorded by the runner and ingest, delivered by e-mail
(a real SMTP server with STARTTLS and a login) and signed webhooks (a real HTTP receiver),
once per event, also with several processes and after a crash; failing endpoints retried
with backoff and never in the pipeline's way; the daily digest."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import notify, runner
from pipeline.artifacts import Artifact
from pipeline.models import Job, Status
from pipeline.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from pipeline.sidecar import EpisodeMetadata
from pipeline.state import StateDB
from pipeline.workspace import Context, open_workspace
from tests.conftest import REPO, TEST_ENV
from tests.notify.conftest import PRODUCER, REVIEWER
from tests.notify.servers import WEBHOOK_SECRET, Receiver, SmtpServer, configure, wait_until
from tests.review.conftest import make_episode  # noqa: F401  (the fixture)
from tests.storage.s3fixtures import free_port


def stored_job(db: StateDB, n: int = 1, producer: str | None = None) -> Job:
    job = Job(id=f"job{n:04d}", sha256=f"{n:064x}", show="learning-weekly",
              title=f"Briefing {n}", slug=f"briefing-{n}", source=f"briefing-{n}.wav",
              original=f"archive/briefing-{n}.wav", probe=None,
              metadata=EpisodeMetadata(producer=producer), status=Status.PROCESSING,
              files={Artifact.ORIGINAL: f"archive/briefing-{n}.wav"})
    db.insert(job)
    return job


def hooks(receiver: Receiver) -> list[dict]:
    return [json.loads(d.body) for d in receiver.deliveries]


def test_a_failure_is_told_to_the_producer_once(ctx: Context, db: StateDB, smtp: SmtpServer,
                                               receiver: Receiver) -> None:
    job = stored_job(db, producer="ana@example.com")
    db.stage_started(job.id, "normalise")
    reason = "the recording is silent; check the microphone and drop it again"
    failed = runner._fail(ctx, job, "normalise", reason)
    rows = db.notifications()
    assert {(r["channel"], r["recipient"], r["status"]) for r in rows} == {
        ("email", "ana@example.com", "pending"), ("webhook", receiver.url, "pending")}
    # recording is all the runner did: nothing has been sent yet
    assert smtp.mailbox.messages == [] and receiver.arrived == 0
    # the same failure seen again (another process, a task delivered twice) adds nothing
    assert notify.event(ctx, "failed", job=failed, stage="normalise", reason=reason) == 0

    assert notify.deliver_due(ctx) == 2
    assert notify.deliver_due(ctx) == 0
    [mail] = smtp.mailbox.messages
    assert mail["To"] == "ana@example.com"  # the sidecar's producer, not the show's
    assert mail["Subject"] == "[Learncast] learning-weekly: 'Briefing 1' failed at normalise"
    body = mail.get_content()
    assert reason in body and f"learncast retry {job.id}" in body
    [hook] = receiver.deliveries
    data = json.loads(hook.body)
    assert (data["event"], data["episode"]["id"], data["stage"], data["reason"]) == (
        "failed", job.id, "normalise", reason)
    assert data["text"].startswith("'Briefing 1' failed at normalise")
    assert verify(WEBHOOK_SECRET, hook.headers[TIMESTAMP_HEADER], hook.body,
                  hook.headers[SIGNATURE_HEADER])
    assert [r["status"] for r in db.notifications()] == ["sent", "sent"]

    # retried, failed again: a new event, told again (to the show's producers this time)
    runner.requeue(ctx, failed)
    runner._fail(ctx, stored_job(db, 2), "trim", "too short")
    runner._fail(ctx, failed.replace(status=Status.PROCESSING), "normalise", reason)
    assert notify.deliver_due(ctx) == 4
    assert len(smtp.mailbox.to("ana@example.com")) == 2
    assert len(smtp.mailbox.to(PRODUCER)) == 1


def test_rejected_recordings_are_told_to_their_producer_during_run(
        ctx: Context, db: StateDB, smtp: SmtpServer, receiver: Receiver) -> None:
    inbox = ctx.workspace.inbox
    (inbox / "notes.mp3").write_bytes(b"this is not audio at all" * 40)
    (inbox / "notes.yaml").write_text("producer: pat@example.com\nseason: zero\n")
    (inbox / "other.mp3").write_bytes(b"\x00" * 2000)
    report = runner.process_inbox(ctx)  # `learncast run`: its courier sends as it goes
    assert sorted(r.outcome for r in report.ingested) == ["rejected", "rejected"]
    [to_pat] = smtp.mailbox.to("pat@example.com")  # from the sidecar, invalid as it is
    assert to_pat["Subject"] == "[Learncast] notes.mp3 was not accepted"
    assert "field 'season'" in to_pat.get_content()
    [to_show] = smtp.mailbox.to(PRODUCER)  # no sidecar: the show's producers
    assert "other.mp3" in to_show["Subject"]
    assert sorted(h["file"] for h in hooks(receiver)) == ["notes.mp3", "other.mp3"]
    assert {r["status"] for r in db.notifications()} == {"sent"}


def test_reviewers_get_a_link_and_producers_hear_of_publication(
        ctx: Context, db: StateDB, smtp: SmtpServer, receiver: Receiver,
        make_episode,  # noqa: F811
) -> None:
    from pipeline.review import service

    job = make_episode("video")
    assert job.status is Status.AWAITING_REVIEW
    assert notify.deliver_due(ctx) == 2
    [mail] = smtp.mailbox.to(REVIEWER)
    assert mail["Subject"] == "[Learncast] learning-weekly: captions of 'Onboarding' await review"
    assert f"https://review.example.com/episodes/{job.id}" in mail.get_content()
    runner.work_queue(ctx)  # held again: the same revision, no second notice
    assert notify.deliver_due(ctx) == 0
    service.decide(ctx, job.id, action="approve", reviewer="Ana", expected_revision=1)
    runner.work_queue(ctx)
    assert db.get(job.id).status is Status.PUBLISHED  # type: ignore[union-attr]
    assert notify.deliver_due(ctx) == 2
    [published] = smtp.mailbox.to(PRODUCER)
    assert "is published" in published["Subject"]
    assert "feeds/learning-weekly/podcast.xml" in published.get_content()
    assert [h["event"] for h in hooks(receiver)] == ["review", "published"]


def test_failing_endpoints_never_block_the_pipeline_and_are_retried(
        workspace_dir: Path, ctx: Context, db: StateDB, smtp: SmtpServer,
        receiver: Receiver) -> None:
    dead_port = free_port()
    slow = Receiver()
    slow.delay_s = 3.0  # beyond the 1 s timeout
    try:
        configure(workspace_dir, show={"webhooks": [f"http://127.0.0.1:{dead_port}/hook",
                                                    slow.url, receiver.url]})
        wctx = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg, state=db)
        job = stored_job(db)
        runner._fail(wctx, job, "trim", "too short")
        assert slow.arrived == 0  # the pipeline never waited for anyone
        before = time.time()
        assert notify.deliver_due(wctx) == 2  # e-mail and the working webhook
        waiting = {r["recipient"]: r for r in db.notifications("pending")}
        assert set(waiting) == {f"http://127.0.0.1:{dead_port}/hook", slow.url}
        assert "unreachable" in waiting[f"http://127.0.0.1:{dead_port}/hook"]["error"]
        assert "timed out" in waiting[slow.url]["error"]
        # tried once and put back for later (after the backoff), not retried in the same pass
        assert all(r["attempts"] == 1 and r["next_at"] > before + 0.05
                   for r in waiting.values())

        slow.delay_s = 0.0
        revived = Receiver(dead_port)  # the dead endpoint comes back
        try:
            wait_until(lambda: notify.deliver_due(wctx) == 0 and not db.notifications("pending"))
        finally:
            revived.close()
        assert len(revived.deliveries) == 1 and len(slow.deliveries) == 1
        assert len(receiver.deliveries) == 1 and len(smtp.mailbox.messages) == 1

        # an endpoint that never works is given up after max_attempts, with its reason
        configure(workspace_dir, show={"webhooks": [f"http://127.0.0.1:{free_port()}/x"]})
        wctx = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg, state=db)
        runner._fail(wctx, stored_job(db, 2), "trim", "too short")
        wait_until(lambda: (notify.deliver_due(wctx), bool(db.notifications("failed")))[1])
        [gone] = db.notifications("failed")
        assert gone["attempts"] == 3 and "unreachable" in gone["error"]
    finally:
        slow.close()


def test_the_courier_of_run_and_watch_sends_in_the_background(
        ctx: Context, db: StateDB, smtp: SmtpServer, receiver: Receiver) -> None:
    with notify.courier(ctx) as courier:
        assert courier is not None and courier.is_alive()
        runner._fail(ctx, stored_job(db), "trim", "too short")
        receiver.wait_for(1)
        wait_until(lambda: len(smtp.mailbox.messages) == 1)
    assert not courier.is_alive()


def _deliver(workspace: Path, extra_env: dict[str, str] | None = None
             ) -> subprocess.Popen[str]:
    code = ("import sys; from pipeline import notify; from pipeline.state import open_state; "
            "from pipeline.workspace import Context, open_workspace; "
            "ws = open_workspace(__import__('pathlib').Path(sys.argv[1])); "
            "ctx = Context(workspace=ws, ffmpeg='', state=open_state(ws)); "
            "print(notify.deliver_due(ctx))")
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(REPO), **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-c", code, str(workspace)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.slow)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_notification_is_sent_once_by_several_processes_and_after_a_crash(
        workspace_dir: Path, ctx: Context, smtp: SmtpServer, receiver: Receiver,
        backend: str, request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "postgresql":
        monkeypatch.setenv("LEARNCAST_STATE__URL", request.getfixturevalue("pg_url"))
    monkeypatch.setenv("LEARNCAST_NOTIFY__TIMEOUT_S", "0.5")  # a 5 s lease
    ws = open_workspace(workspace_dir)
    db = StateDB(ws.settings.state.url or ws.state_db)
    try:
        wctx = Context(workspace=ws, ffmpeg=ctx.ffmpeg, state=db)
        for n in range(1, 13):
            runner._fail(wctx, stored_job(db, n), "trim", f"reason {n}")
        assert len(db.notifications("pending")) == 24
        procs = [_deliver(workspace_dir) for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        assert sum(int(out.strip().splitlines()[-1]) for out, _ in outs) == 24
        ids = [d.headers["X-Learncast-Delivery"] for d in receiver.deliveries]
        assert len(ids) == 12 and len(set(ids)) == 12
        assert len(smtp.mailbox.messages) == 12
        assert len({m["Message-ID"] for m in smtp.mailbox.messages}) == 12

        # a sender that dies between claiming and sending: its claim runs out, then the
        # notification goes out once (the lease is 10 x timeout_s = 5 s here)
        runner._fail(wctx, stored_job(db, 99), "trim", "reason 99")
        marker = tmp_path / "paused"
        proc = _deliver(workspace_dir, {"LEARNCAST_TEST_PAUSE_AT": "notify:claimed",
                                        "LEARNCAST_TEST_PAUSE_MARKER": str(marker)})
        wait_until(marker.exists, timeout_s=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        [held] = db.notifications("sending")
        assert notify.deliver_due(wctx) == 1  # the other one; the claimed one is not due yet
        assert db.notifications("sending") == [held]
        wait_until(lambda: notify.deliver_due(wctx) == 1, timeout_s=30)
        assert len(receiver.deliveries) == 13 and len(smtp.mailbox.messages) == 13
        assert {r["status"] for r in db.notifications()} == {"sent"}
    finally:
        db.close()


def test_daily_digest_collects_e_mails_and_leaves_webhooks_immediate(
        workspace_dir: Path, ctx: Context, db: StateDB, smtp: SmtpServer,
        receiver: Receiver) -> None:
    real = dt.datetime.now(dt.UTC)
    hour = (real.hour + 1) % 24
    configure(workspace_dir, notify={"digest": "daily", "digest_hour": hour})
    wctx = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg, state=db)
    runner._fail(wctx, stored_job(db, 1), "trim", "too short")
    runner._fail(wctx, stored_job(db, 2), "encode", "the disk is full")
    assert notify.deliver_due(wctx, now=real) == 2  # the webhooks; the e-mails wait
    assert smtp.mailbox.messages == [] and len(receiver.deliveries) == 2
    later = real + dt.timedelta(hours=2)  # the digest hour has passed
    assert notify.deliver_due(wctx, now=later) == 1
    assert notify.deliver_due(wctx, now=later + dt.timedelta(minutes=5)) == 0
    [digest] = smtp.mailbox.messages
    assert digest["To"] == PRODUCER
    assert "Daily digest" in digest["Subject"] and "2 notifications" in digest["Subject"]
    text = digest.get_content()
    assert "'Briefing 1' failed at trim" in text and "'Briefing 2' failed at encode" in text
    assert {r["status"] for r in db.notifications() if r["kind"] == "failed"
            and r["channel"] == "email"} == {"digested"}


def test_nothing_is_recorded_without_a_channel_or_for_unlisted_events(
        workspace_dir: Path, ctx: Context, db: StateDB) -> None:
    configure(workspace_dir, notify={"smtp_host": "", "events": ["failed"]},
              show={"webhooks": []})
    quiet = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg, state=db)
    runner._fail(quiet, stored_job(db), "trim", "too short")
    assert db.notifications() == []
    configure(workspace_dir, notify={"smtp_host": "127.0.0.1"})
    chatty = Context(workspace=open_workspace(workspace_dir), ffmpeg=ctx.ffmpeg, state=db)
    assert notify.event(chatty, "published", job=stored_job(db, 2)) == 0  # not in events
    with notify.courier(quiet) as courier:
        assert courier is None  # nothing to send: no thread
