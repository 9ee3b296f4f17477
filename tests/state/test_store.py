"""The state store's contract, on both databases: every test runs on SQLite and on a real
PostgreSQL server (the PostgreSQL cases are in the slow suite: they need the server)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.artifacts import Artifact
from pipeline.models import Job, Status
from pipeline.sidecar import EpisodeMetadata
from pipeline.state import StateDB, WorkingCopy
from pipeline.state.migrations import LATEST, schema_version
from tests.conftest import REPO

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state" / "learncast.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(url: str) -> Iterator[StateDB]:
    db = StateDB(url)
    yield db
    db.close()


def episode(n: int, **changes: object) -> Job:
    job = Job(id=f"ep{n:04d}_x%", sha256=f"{n:064x}", show="show", title=f"Episode {n}",
              slug=f"episode-{n}", source=f"e{n}.wav", original=f"archive/e{n}.wav",
              probe=None, metadata=EpisodeMetadata(),
              files={Artifact.ORIGINAL: f"archive/e{n}.wav"},
              created_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n))
    return job.replace(**changes)


def test_episodes_round_trip(store: StateDB) -> None:
    job = episode(1, measurements={"source_duration_s": 3.5})
    store.insert(job)
    assert store.get(job.id) == job
    assert store.by_sha256(job.sha256) == job
    changed = job.with_file(Artifact.MASTER_AUDIO, "work/x/master.flac").replace(
        status=Status.FAILED, error="what went wrong")
    store.save(changed)
    assert store.get(job.id) == changed
    store.insert(episode(2))
    assert [j.id for j in store.all()] == [job.id, episode(2).id]
    assert store.all(show="other") == []
    # prefixes are matched literally: % and _ are not wildcards
    assert [j.id for j in store.find("ep0001_x%")] == [job.id]
    assert store.find("ep%") == [] and store.find("ep_0") == []
    assert store.counts() == {"failed": 1, "queued": 1}
    store.delete(job.id)
    assert store.get(job.id) is None


def test_stage_progress(store: StateDB) -> None:
    job = episode(1)
    store.insert(job)
    assert store.stage_started(job.id, "prepare") == 1
    assert store.stage_started(job.id, "prepare") == 2
    store.stage_finished(job.with_file(Artifact.SOURCE_AUDIO, "work/s.flac"), "prepare", 1.5)
    row = store.stage_status(job.id)["prepare"]
    assert (row["status"], row["attempts"], row["seconds"]) == ("done", 2, 1.5)
    assert store.get(job.id).files[Artifact.SOURCE_AUDIO] == "work/s.flac"  # type: ignore[union-attr]
    store.stage_started(job.id, "trim")
    store.stage_failed(job.id, "trim", "bad")
    store.stage_started(job.id, "review")
    store.stage_held(job.id, "review")
    status = store.stage_status(job.id)
    assert (status["trim"]["status"], status["trim"]["error"]) == ("failed", "bad")
    assert status["review"]["status"] == "held"
    store.reset_stages(job.id, ["trim", "review"])
    assert set(store.stage_status(job.id)) == {"prepare"}
    store.event(job.id, "note", "one")
    store.event(job.id, "note", "two")
    assert [e["message"] for e in store.events(job.id)] == ["one", "two"]
    store.add_review(job.id, "Ana", "approve", 1, "fine", "abc")
    [review] = store.reviews(job.id)
    assert (review["reviewer"], review["revision"], review["captions_sha256"]) == ("Ana", 1,
                                                                                    "abc")


def test_claim_next_gives_each_episode_to_one_store(url: str) -> None:
    stores = [StateDB(url) for _ in range(4)]
    try:
        for n in range(12):
            stores[0].insert(episode(n))
        # Four stores in one process share its owner token; as workers on other machines they
        # would differ. Give each its own, as separate processes have.
        for k, s in enumerate(stores):
            s.owner = f"elsewhere:{k}:1"
        taken: list[str] = []
        lock = threading.Lock()

        def work(s: StateDB) -> None:
            while (job := s.claim_next()) is not None:
                with lock:
                    taken.append(job.id)

        threads = [threading.Thread(target=work, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken) == sorted(episode(n).id for n in range(12))
    finally:
        for s in stores:
            s.close()


def test_feed_identity_is_assigned_once(url: str) -> None:
    stores = [StateDB(url) for _ in range(4)]
    try:
        results: list[tuple[str, str]] = []
        tokens = iter(f"token{k}" for k in range(100))
        lock = threading.Lock()

        def ident(s: StateDB) -> None:
            with lock:
                token = next(tokens)
            got = s.feed_identity("show", "audio", url_for=lambda t: f"http://x/{t}.xml",
                                  guid_for=lambda u: f"guid-{u}", new_token=lambda: token)
            with lock:
                results.append(got)

        threads = [threading.Thread(target=ident, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(results)) == 1
        _guid, token = results[0]
        # the video feed shares the show's token
        assert stores[0].feed_identity("show", "video", url_for=lambda t: f"v/{t}",
                                       guid_for=lambda u: u, new_token=lambda: "new")[1] == token
        stores[1].feed_published("show", "audio", sha256="s", url="u", items=["a", "b"])
        rows = stores[2].feed_rows("show")
        assert [(r["feed"], r["items"]) for r in rows] == [("audio", ["a", "b"]),
                                                           ("video", [])]
    finally:
        for s in stores:
            s.close()


def test_locked_holds_other_writers(url: str) -> None:
    one, two = StateDB(url), StateDB(url)
    try:
        job = episode(1)
        one.insert(job)
        order: list[str] = []
        inside = threading.Event()

        def writer() -> None:
            inside.wait()
            two.save(job.replace(title="second"))
            order.append("second")

        t = threading.Thread(target=writer)
        t.start()
        with one.locked(job.id) as current:
            inside.set()
            t.join(timeout=0.5)
            assert t.is_alive(), "a writer got past the lock"
            one.save(current.replace(title="first"))
            order.append("first")
        t.join()
        assert order == ["first", "second"] and two.get(job.id).title == "second"  # type: ignore[union-attr]
    finally:
        one.close()
        two.close()


def test_stage_claims_for_distributed_workers(url: str) -> None:
    a, b = StateDB(url), StateDB(url)
    try:
        a.owner, b.owner = "host-a:1:1", "host-b:2:2"  # two machines
        job = episode(1)
        a.insert(job)
        [taken] = a.take_queued()
        assert taken.id == job.id and taken.status is Status.PROCESSING
        assert a.take_queued() == []
        first = a.claim_stage(job.id, "prepare", lease_s=60)
        assert (first.state, first.attempt) == ("claimed", 1)
        assert b.claim_stage(job.id, "prepare", lease_s=60).state == "busy"
        assert a.stage_heartbeat(job.id, "prepare") and not b.stage_heartbeat(job.id, "prepare")
        # a goes silent for longer than the lease: b takes over, and a's result is refused
        taken_over = b.claim_stage(job.id, "prepare", lease_s=0.0)
        assert (taken_over.state, taken_over.attempt) == ("claimed", 2)
        with pytest.raises(Exception, match="taken over"):
            a.stage_finished(job, "prepare", 1.0, leased=True)
        copy = WorkingCopy(Artifact.SOURCE_AUDIO, "work/x/source.flac",
                           "learncast-work/x/source_audio-abc.flac", "ab" * 32, 123)
        b.stage_finished(job.with_file(Artifact.SOURCE_AUDIO, copy.path), "prepare", 2.0,
                         copies=[copy], leased=True)
        assert a.claim_stage(job.id, "prepare", lease_s=60).state == "done"
        assert a.working_copies(job.id) == {Artifact.SOURCE_AUDIO: copy}
        # a transient fault gives the stage back; the attempt count stays
        assert b.claim_stage(job.id, "trim", lease_s=60).attempt == 1
        b.stage_retry_later(job.id, "trim", "storage timeout")
        assert a.claim_stage(job.id, "trim", lease_s=60).attempt == 2
        a.drop_copies(job.id, [copy.key])
        assert a.working_copies(job.id) == {}
    finally:
        a.close()
        b.close()


def test_a_dead_same_host_owner_is_taken_over_at_once(url: str) -> None:
    a = StateDB(url)
    try:
        job = episode(1)
        a.insert(job)
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        from pipeline.state import process_token

        a.owner = process_token(int(gone.stdout))  # a process of this host that has exited
        assert a.claim_stage(job.id, "encode", lease_s=3600).state == "claimed"
        a.owner = process_token()
        assert a.claim_stage(job.id, "encode", lease_s=3600).attempt == 2
    finally:
        a.close()


def test_migrate_runs_once_when_many_processes_start_together(url: str) -> None:
    """Six processes open a new database at the same moment; it ends at the latest schema,
    created once (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock)."""
    code = ("import sys; from pipeline.state import StateDB; db = StateDB(sys.argv[1]); "
            "print(db.schema_before, db.schema_after); db.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(6)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    befores = sorted(out.split()[0] for out, _ in outputs)
    assert befores.count("0") == 1 and befores[1:] == [str(LATEST)] * 5, outputs
    db = StateDB(url)
    try:
        with db.transaction() as c:
            assert schema_version(c) == LATEST
        db.insert(episode(1))
        assert len(db.all()) == 1
    finally:
        db.close()


# --- notifications, learners, download counts (issue 19) ----------------------------------

def _note(key: str, recipient: str = "a@example.com", **more: object) -> dict[str, object]:
    return {"key": key, "channel": "email", "recipient": recipient, "kind": "failed",
            "episode_id": None, "payload": "{}", "status": "pending", "next_at": 0.0, **more}


def test_notifications_are_recorded_once_and_claimed_by_one(url: str, store: StateDB) -> None:
    assert store.notify_add([_note("k1"), _note("k1", "b@example.com"), _note("k2")]) == 3
    assert store.notify_add([_note("k1"), _note("k2")]) == 0  # the same events seen again
    others = [StateDB(url) for _ in range(3)]
    for k, db in enumerate(others):
        db.owner = f"elsewhere:{k}:1"  # senders on three machines; the test store is a fourth
    claimed: list[int] = []
    lock = threading.Lock()

    def take(db: StateDB) -> None:
        while (row := db.notify_claim(1e12, 60.0)) is not None:
            with lock:
                claimed.append(int(row["id"]))

    try:
        threads = [threading.Thread(target=take, args=(db,)) for db in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed) == sorted(r["id"] for r in store.notifications())
        # only the claimant settles; a retry comes back when due
        row = store.notifications()[0]
        assert not store.notify_settle(row["id"])
        owner = next(db for db in others if db.owner == row["owner"])
        assert owner.notify_settle(row["id"], error="busy", retry_at=5.0)
        assert store.notify_claim(4.0, 60.0) is None
        again = store.notify_claim(6.0, 60.0)
        assert again is not None and again["id"] == row["id"] and again["attempts"] == 2
        assert store.notify_settle(row["id"])
        assert store.notifications("sent")[0]["sent_at"]
    finally:
        for db in others:
            db.close()


def test_a_claim_whose_lease_ran_out_is_taken_over(store: StateDB, url: str) -> None:
    store.notify_add([_note("k")])
    other = StateDB(url)
    try:
        other.owner = "elsewhere:1:1"
        row = other.notify_claim(1e12, 0.0)  # a lease that is over at once
        assert row is not None
        taken = store.notify_claim(1e12, 60.0)
        assert taken is not None and taken["id"] == row["id"]
        assert not other.notify_settle(row["id"])  # too late: it is no longer theirs
        assert store.notify_settle(row["id"])
    finally:
        other.close()


def test_one_digest_per_recipient_and_day(store: StateDB) -> None:
    store.notify_add([_note("a", status="digest"), _note("b", status="digest"),
                      _note("c", "z@example.com", status="digest")])
    made = store.notify_digest(before="9999", key="digest:2026-11-02", now=0.0,
                               build=lambda who, rows: f"{who}:{len(rows)}")
    assert made == 2
    assert store.notify_digest(before="9999", key="digest:2026-11-02", now=0.0,
                               build=lambda who, rows: "x") == 0
    digests = {r["recipient"]: r["payload"] for r in store.notifications()
               if r["kind"] == "digest"}
    assert digests == {"a@example.com": "a@example.com:2", "z@example.com": "z@example.com:1"}
    assert len(store.notifications("digested")) == 3


def test_learners_and_downloads(store: StateDB) -> None:
    store.learner_add("l1", "show", "ana@example.com", "d1")
    store.learner_add("l2", "show", "bo@example.com", "d2")
    assert store.learner_by_token("d1")["id"] == "l1"  # type: ignore[index]
    assert store.learner_by_token("nope") is None
    assert [r["id"] for r in store.learner_revoke("show", "ana@example.com")] == ["l1"]
    assert store.learner_revoke("show", "ana@example.com") == []
    assert store.learner_by_token("d1")["revoked_at"]  # type: ignore[index]
    assert "token_sha256" not in store.learners()[0]
    store.downloads_replace(["2026-11-01", "2026-11-02"], [("e", "2026-11-01", "", 3),
                                                           ("e", "2026-11-02", "l2", 1)])
    store.downloads_replace(["2026-11-02"], [("e", "2026-11-02", "", 5)])
    assert [(r["day"], r["learner"], r["downloads"]) for r in store.downloads()] == [
        ("2026-11-01", "", 3), ("2026-11-02", "", 5)]


def test_one_publisher_of_a_show_at_a_time(url: str, store: StateDB) -> None:
    """`publishing(show)` is exclusive across stores (processes), per show, and does not hold
    a data transaction: the holder and others still write while it is held."""
    other = StateDB(url)
    order: list[str] = []
    try:
        with store.publishing("a"):
            waiter = threading.Thread(target=lambda: _publish(other, "a", order))
            waiter.start()
            with other.publishing("b"):  # another show is not blocked
                order.append("b")
            store.event(None, "note", "written while the lock is held")
            other.event(None, "note", "and by another store")
            time.sleep(0.3)
            order.append("first done")
        waiter.join(10)
        assert order == ["b", "first done", "second"]
    finally:
        other.close()


def _publish(db: StateDB, show: str, order: list[str]) -> None:
    with db.publishing(show):
        order.append("second")
