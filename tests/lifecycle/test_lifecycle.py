"""The lifecycle state machine with the real DBOS workflows (docs/architecture.md, Lifecycle; issue
4)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.sandbox import SandboxUnavailable
from agent_sessions.sandbox.fake import FakeProvider
from agent_sessions.store.models import Chat, ChatKey, SessionRow
from tests.lifecycle.conftest import Background, Gate, HarnessFactory, both_providers
from tests.support.waiting import until


def _write(h: Any, session: dict[str, Any], path: str, data: bytes) -> None:
    async def go() -> None:
        box = await h.sandbox_of(session)
        await box.write_file(path, data)

    asyncio.run(go())


def _read(h: Any, session: dict[str, Any], path: str) -> bytes:
    async def go() -> bytes:
        box = await h.sandbox_of(session)
        return bytes(await box.read_file(path))

    return asyncio.run(go())


@both_providers
def test_provisioning_makes_the_session_active(harness: HarnessFactory) -> None:
    h = harness()
    created = h.create()
    assert created["lifecycleState"] == "provisioning"
    s = h.wait_state(created["id"], "active")
    assert s["lifecycleVersion"] == 1
    state = {"provider": h.provider.kind, "name": created["id"]}
    if h.provider.kind == "local":  # a local sandbox is reachable from its host only
        state["host"] = h.settings.executor_id
    assert s["sandboxState"] == state
    assert s["lastActivityAt"] and s["hibernateAfter"] and s["sandboxExpiresAt"]
    # The watcher takes its lease in its own first step, just after the activation commits.
    deadline = time.monotonic() + 20
    while s["lifecycleRunId"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
        s = h.session(created["id"])
    assert s["lifecycleRunId"] == f"watch-{created['id']}-1"
    status = h.sandbox(created["id"])
    assert status["lifecycleState"] == "active" and status["hasSnapshot"] is False
    assert status["serverTime"].endswith("Z")


@both_providers
def test_idle_session_hibernates_and_resume_restores_files(harness: HarnessFactory) -> None:
    h = harness(idle=1)
    sid = h.create()["id"]
    active = h.wait_state(sid, "active")
    _write(h, active, "notes/todo.txt", b"remember me")
    slept = h.wait_state(sid, "hibernated")
    assert slept["snapshotUrl"] and slept["snapshotSizeBytes"] and slept["snapshotCreatedAt"]
    assert slept["sandboxState"] is None and slept["lifecycleRunId"] is None
    assert slept["hibernateAfter"] is None
    r = h.action(sid, "resume")
    assert r.status_code == 200, r.text
    assert r.json()["lifecycleState"] == "active"
    back = h.session(sid)
    assert _read(h, back, "notes/todo.txt") == b"remember me"


def test_hard_timeout_hibernates_despite_activity(harness: HarnessFactory) -> None:
    h = harness(idle=600, hard=11)  # due = expiry - 10 s buffer = 1 s after activation
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    h.action(sid, "activity")
    h.wait_state(sid, "hibernated", timeout=10)


@both_providers
def test_manual_hibernate_and_version_checks(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    s = h.wait_state(sid, "active")
    v = s["lifecycleVersion"]
    for action in ("hibernate", "resume", "extend", "activity"):
        r = h.action(sid, action, {"expectedLifecycleVersion": v + 5})
        assert r.status_code == 409, (action, r.text)
        assert "version" in r.json()["error"]
    assert h.session(sid)["lifecycleVersion"] == v
    r = h.action(sid, "hibernate", {"expectedLifecycleVersion": v})
    assert r.status_code == 200, r.text
    assert r.json()["lifecycleState"] == "hibernated" and r.json()["hasSnapshot"] is True
    r = h.action(sid, "activity")
    assert r.status_code == 409  # not active
    r = h.action(sid, "resume", {"expectedLifecycleVersion": h.session(sid)["lifecycleVersion"]})
    assert r.status_code == 200 and r.json()["lifecycleState"] == "active"


def test_activity_and_extend_move_deadlines(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    before = h.wait_state(sid, "active")
    r = h.action(sid, "activity", {"expectedLifecycleVersion": before["lifecycleVersion"]})
    assert r.status_code == 200
    assert r.json()["hibernateAfter"] > before["hibernateAfter"]
    assert r.json()["lifecycleVersion"] == before["lifecycleVersion"]
    r = h.action(sid, "extend")
    assert r.status_code == 200
    assert r.json()["sandboxExpiresAt"] > before["sandboxExpiresAt"]
    assert r.json()["lifecycleVersion"] == before["lifecycleVersion"] + 1


def test_live_turn_blocks_hibernation(harness: HarnessFactory) -> None:
    h = harness(idle=1)
    created = h.client.post("/api/sessions", json={}, headers=h.account.headers).json()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    with h.backend.db.write() as db:
        chat = db.get(Chat, ChatKey(h.account.id, chat_id))
        assert chat is not None
        chat.active_stream_id = "run-live"
    h.wait_state(sid, "active")
    assert h.action(sid, "hibernate").status_code == 409
    threading.Event().wait(2.5)
    assert h.session(sid)["lifecycleState"] == "active"
    with h.backend.db.write() as db:
        chat = db.get(Chat, ChatKey(h.account.id, chat_id))
        assert chat is not None
        chat.active_stream_id = None
    h.wait_state(sid, "hibernated", timeout=40)


@both_providers
def test_archive_snapshots_and_unarchive_resumes(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    active = h.wait_state(sid, "active")
    _write(h, active, "a.txt", b"kept")
    r = h.client.patch(
        f"/api/sessions/{sid}", json={"status": "archived"}, headers=h.account.headers
    )
    assert r.status_code == 200 and r.json()["session"]["lifecycleState"] == "archived"
    deadline = 100
    while h.session(sid)["sandboxState"] is not None and deadline:
        threading.Event().wait(0.05)
        deadline -= 1
    archived = h.session(sid)
    assert archived["sandboxState"] is None and archived["snapshotUrl"]
    assert h.action(sid, "resume").status_code == 409  # archived
    r = h.client.patch(
        f"/api/sessions/{sid}", json={"status": "running"}, headers=h.account.headers
    )
    assert r.status_code == 200 and r.json()["session"]["lifecycleState"] == "hibernated"
    assert h.action(sid, "resume").status_code == 200
    assert _read(h, h.session(sid), "a.txt") == b"kept"


@both_providers
def test_delete_removes_the_sandbox(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    assert h.sandbox_exists(sid)
    assert h.client.delete(f"/api/sessions/{sid}", headers=h.account.headers).status_code == 200
    h.wait_sandbox_gone(sid)


class _BrokenCreate(FakeProvider):
    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.calls = 0

    async def create(self, name: str) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise SandboxUnavailable("provider overloaded (injected)")
        return await super().create(name)


def test_transient_provider_errors_are_retried(harness: HarnessFactory, tmp_path: Path) -> None:
    provider = _BrokenCreate(tmp_path / "boxes", failures=2)
    h = harness(provider=provider)
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    assert provider.calls == 3


def test_permanent_provider_failure_marks_failed(harness: HarnessFactory, tmp_path: Path) -> None:
    provider = _BrokenCreate(tmp_path / "boxes", failures=100)
    h = harness(provider=provider)
    sid = h.create()["id"]
    s = h.wait_state(sid, "failed", timeout=30)
    assert "provider overloaded" in s["lifecycleError"]
    assert "Traceback" not in s["lifecycleError"]


def test_corrupt_snapshot_fails_restore_and_keeps_snapshot(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    assert h.action(sid, "hibernate").status_code == 200
    with h.backend.db.write() as db:
        row = db.get(SessionRow, sid)
        assert row is not None
        good_url = row.snapshot_url
        row.snapshot_url = "fake://missing-snapshot"
    r = h.action(sid, "resume")
    assert r.status_code == 409
    s = h.session(sid)
    assert s["lifecycleState"] == "failed" and "Restore failed" in s["lifecycleError"]
    assert s["snapshotUrl"] == "fake://missing-snapshot"  # nothing deleted or replaced
    with h.backend.db.write() as db:
        row = db.get(SessionRow, sid)
        assert row is not None
        row.snapshot_url = good_url
    assert h.action(sid, "resume").status_code == 200  # a failed session heals from its snapshot


def test_lifecycle_hooks_run(harness: HarnessFactory, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    cmd = {"type": "command", "command": f"cat >> {log}; echo >> {log}"}
    h = harness(
        hooks={
            event: [{"hooks": [cmd]}]
            for event in ("SandboxProvisioned", "BeforeHibernate", "AfterRestore")
        }
    )
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    h.action(sid, "hibernate")
    h.action(sid, "resume")
    events = [line for line in log.read_text().splitlines() if line]
    assert [e.split('"hook_event_name": "')[1].split('"')[0] for e in events] == [
        "SandboxProvisioned",
        "BeforeHibernate",
        "AfterRestore",
    ]
    assert all(sid in e for e in events)


def test_blocking_provision_hook_fails_the_session(harness: HarnessFactory) -> None:
    cmd = {"type": "command", "command": "echo 'repo policy says no' >&2; exit 2"}
    h = harness(hooks={"SandboxProvisioned": [{"hooks": [cmd]}]})
    sid = h.create()["id"]
    s = h.wait_state(sid, "failed")
    assert "repo policy says no" in s["lifecycleError"]


# --- races ------------------------------------------------------------------------------------


@both_providers
def test_two_resumes_at_once_restore_once(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    h.action(sid, "hibernate")
    hibernated_version = h.session(sid)["lifecycleVersion"]
    results: list[int] = []

    def resume() -> None:
        results.append(h.action(sid, "resume").status_code)

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]
    s = h.session(sid)
    assert s["lifecycleState"] == "active"
    assert s["lifecycleVersion"] == hibernated_version + 2  # one restoring, one active


@both_providers
def test_resume_racing_hibernate_ends_consistent(harness: HarnessFactory) -> None:
    """Hibernate and resume at once, in whichever order the database takes them: resume
    answers active, the session stays where the later of the two left it, the sandbox exists
    exactly when the session is active, and the workspace came through."""
    h = harness()
    sid = h.create()["id"]
    active = h.wait_state(sid, "active")
    _write(h, active, "kept.txt", b"kept")
    answers: dict[str, Any] = {}

    def run(name: str) -> None:
        r = h.action(sid, name)
        answers[name] = r.json() if r.status_code == 200 else r.text

    threads = [threading.Thread(target=run, args=(n,)) for n in ("hibernate", "resume")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hibernated, resumed = answers["hibernate"], answers["resume"]
    assert isinstance(hibernated, dict) and isinstance(resumed, dict), answers
    assert resumed["lifecycleState"] == "active", answers
    assert hibernated["lifecycleVersion"] > active["lifecycleVersion"], answers  # it hibernated
    # Both calls have returned: nothing is in flight, the later answer is the state.
    last = max(hibernated, resumed, key=lambda v: v["lifecycleVersion"])
    final = h.session(sid)
    assert (final["lifecycleState"], final["lifecycleVersion"]) == (
        last["lifecycleState"],
        last["lifecycleVersion"],
    ), answers
    assert final["snapshotUrl"] is not None
    running = final["lifecycleState"] == "active"
    assert (final["sandboxState"] is not None) == running == h.sandbox_exists(sid), final
    if not running:
        assert h.action(sid, "resume").status_code == 200
    assert _read(h, h.session(sid), "kept.txt") == b"kept"


@both_providers
def test_resume_during_hibernate_waits_for_it_then_restores(
    harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume that arrives while the snapshot is being taken waits for the hibernation to
    finish, then restores from that snapshot."""
    from agent_sessions.lifecycle import Lifecycle

    seen_hibernating = threading.Event()
    real_view = Lifecycle._view

    async def view(self: Lifecycle, session_id: str) -> Any:
        v = await real_view(self, session_id)
        if v.lifecycle_state == "hibernating":
            seen_hibernating.set()
        return v

    monkeypatch.setattr(Lifecycle, "_view", view)
    gate = Gate(1)
    h = harness(hold_snapshot=gate)
    sid = h.create()["id"]
    active = h.wait_state(sid, "active")
    _write(h, active, "kept.txt", b"kept")
    hibernating = h.action_in_background(sid, "hibernate")
    gate.wait_held(1)
    resuming = h.action_in_background(sid, "resume")
    assert seen_hibernating.wait(30)  # the resume is waiting on the hibernation
    assert h.session(sid)["lifecycleState"] == "hibernating"
    gate.release(1)
    resumed, hibernated = resuming.result(), hibernating.result()
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["lifecycleState"] == "active"
    assert hibernated.status_code == 200, hibernated.text
    final = h.session(sid)
    assert final["lifecycleState"] == "active" and final["snapshotUrl"] is not None
    # active (v1) → hibernating → hibernated → restoring → active
    assert final["lifecycleVersion"] == active["lifecycleVersion"] + 4
    assert _read(h, final, "kept.txt") == b"kept"


class _HeldDelete(FakeProvider):
    """The fake, with a ``delete_snapshot`` (the workflows use one where a provider has it)
    that waits on a gate: the hibernation's last step, after the session is ``hibernated``."""

    def __init__(self, root: Path, gate: Gate) -> None:
        super().__init__(root)
        self.gate = gate

    async def delete_snapshot(self, url: str) -> None:
        await self.gate.passing()


def test_hibernate_answers_when_a_resume_moved_the_session_on(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    """The hibernate call answers once its hibernation is over, even when a resume restored the
    sandbox before the call looked: it waited for ``hibernated`` and sat there for ten
    minutes."""
    gate = Gate(1)
    h = harness(provider=_HeldDelete(tmp_path / "boxes", gate))
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    assert h.action(sid, "hibernate").status_code == 200
    assert h.action(sid, "resume").status_code == 200  # now a previous snapshot to delete
    hibernating = h.action_in_background(sid, "hibernate")
    gate.wait_held(1)  # recorded hibernated; deleting the snapshot it replaced
    assert h.session(sid)["lifecycleState"] == "hibernated"
    r = h.action(sid, "resume")
    assert r.status_code == 200 and r.json()["lifecycleState"] == "active"
    gate.release(1)
    try:
        answer = hibernating.result(timeout=60)
    finally:
        if hibernating.thread.is_alive():  # let it go: hibernate again, which it waits for
            h.action(sid, "hibernate")
    assert answer.status_code == 200, answer.text
    assert answer.json()["lifecycleVersion"] >= r.json()["lifecycleVersion"]


def _hibernation_gone_stale(h: Any, gate: Gate) -> tuple[str, Background, int]:
    """A session whose hibernation is held in its snapshot (call 1 of ``gate``) while it moves
    on: archived (the archive snapshots and stops the sandbox), unarchived, resumed, and its
    ``work.txt`` changed from "old" to "new". The held call, and the version it acts on."""
    sid = h.create()["id"]
    _write(h, h.wait_state(sid, "active"), "work.txt", b"old")
    stale = h.action_in_background(sid, "hibernate")
    gate.wait_held(1)
    stale_version = h.session(sid)["lifecycleVersion"]
    for status in ("archived", "running"):
        r = h.client.patch(
            f"/api/sessions/{sid}", json={"status": status}, headers=h.account.headers
        )
        assert r.status_code == 200, r.text
        until("the archive to stop the sandbox", lambda: h.session(sid)["sandboxState"] is None)
    assert h.action(sid, "resume").status_code == 200
    _write(h, h.session(sid), "work.txt", b"new")
    return sid, stale, stale_version


@both_providers
def test_a_stale_hibernation_loses_to_a_later_one(harness: HarnessFactory) -> None:
    """A hibernation held up in its snapshot while the session moved on (archived, unarchived,
    resumed, changed, hibernating again) finishes late: it meets the state it expects,
    ``hibernating``, at a later version, and must lose the compare-and-set. The later
    hibernation is the one recorded, with the later files."""
    from dbos import DBOS

    gate = Gate(1, 3)  # the stale hibernation's snapshot, and the later one's (2: archive)
    h = harness(hold_snapshot=gate)
    sid, stale, stale_version = _hibernation_gone_stale(h, gate)
    later = h.action_in_background(sid, "hibernate")
    gate.wait_held(3)
    again = h.session(sid)
    assert again["lifecycleState"] == "hibernating"
    assert again["lifecycleVersion"] > stale_version

    gate.release(1)
    outcome = DBOS.retrieve_workflow(f"hibernate-{sid}-{stale_version}").get_result()
    now = h.session(sid)
    assert (now["lifecycleState"], now["lifecycleVersion"]) == (
        "hibernating",
        again["lifecycleVersion"],
    ), f"the stale hibernation ({outcome}) moved the session: {now}"

    gate.release(3)
    assert later.result().status_code == 200, later.result().text
    assert stale.result().status_code == 200, stale.result().text
    final = h.session(sid)
    assert final["lifecycleState"] == "hibernated"
    assert final["lifecycleVersion"] == again["lifecycleVersion"] + 1
    if h.provider.kind == "local":  # the stale snapshot and the archive's are gone
        assert h.snapshots_kept(sid) == [final["snapshotUrl"]]
    assert h.action(sid, "resume").status_code == 200
    assert _read(h, h.session(sid), "work.txt") == b"new"


def test_activity_racing_the_watcher(harness: HarnessFactory) -> None:
    """Activity pinged as the idle deadline comes: each ping either wins (200, the deadline
    moved) or finds the hibernation begun (409), never a mix: the hibernation that ends it
    starts after the deadline the last winning ping set, and keeps that ping's time."""
    h = harness(idle=1)
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    won: dict[str, Any] | None = None
    for _ in range(40):
        r = h.action(sid, "activity")
        if r.status_code == 409:
            assert h.session(sid)["lifecycleState"] in ("hibernating", "hibernated")
            break
        assert r.status_code == 200, r.text
        won = r.json()
        threading.Event().wait(0.3)  # pace the pings around the 1 s deadline (not a wait)
    final = h.wait_state(sid, "hibernated", timeout=30)
    if won is not None:
        assert final["lastActivityAt"] == won["lastActivityAt"]
        hibernated_at = datetime.fromisoformat(final["snapshotCreatedAt"])
        assert hibernated_at >= datetime.fromisoformat(won["hibernateAfter"]), (won, final)


def test_a_stale_hibernation_leaves_a_resumed_sandbox_alone(harness: HarnessFactory) -> None:
    """The stale hibernation of the test above, finishing while the session is active again:
    it loses, and the sandbox the resume made (the same name) and the work in it stay."""
    from dbos import DBOS

    gate = Gate(1)
    h = harness(hold_snapshot=gate)
    sid, stale, stale_version = _hibernation_gone_stale(h, gate)
    gate.release(1)
    DBOS.retrieve_workflow(f"hibernate-{sid}-{stale_version}").get_result()
    assert stale.result().status_code == 200
    now = h.session(sid)
    assert now["lifecycleState"] == "active"
    assert h.sandbox_exists(sid), "the stale hibernation destroyed the live sandbox"
    assert _read(h, now, "work.txt") == b"new"


@both_providers
def test_archive_during_provisioning(harness: HarnessFactory) -> None:
    """An archive that lands while the sandbox is being made: the sandbox made meanwhile is
    snapshotted and removed, not left running."""
    gate = Gate(1)
    h = harness(hold_create=gate)
    sid = h.create()["id"]
    gate.wait_held(1)  # the sandbox exists; provisioning has not recorded it
    r = h.client.patch(
        f"/api/sessions/{sid}", json={"status": "archived"}, headers=h.account.headers
    )
    assert r.status_code == 200
    gate.release(1)
    h.wait_sandbox_gone(sid)
    deadline = time.monotonic() + 20
    while (s := h.session(sid))["snapshotUrl"] is None:
        assert time.monotonic() < deadline, s
        time.sleep(0.05)
    assert s["lifecycleState"] == "archived" and s["sandboxState"] is None
    if h.provider.kind == "local":
        assert h.snapshots_kept(sid) == [s["snapshotUrl"]]


@both_providers
def test_delete_during_hibernate(harness: HarnessFactory) -> None:
    """A delete while the snapshot is being taken: the delete succeeds at once, the sandbox
    goes, the hibernation finishing afterwards finds no session and drops its snapshot, and
    the hibernate call answers 404."""
    gate = Gate(1)
    h = harness(hold_snapshot=gate)
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    hibernating = h.action_in_background(sid, "hibernate")
    gate.wait_held(1)
    assert h.session(sid)["lifecycleState"] == "hibernating"
    r = h.client.delete(f"/api/sessions/{sid}", headers=h.account.headers)
    assert r.status_code == 200, r.text
    h.wait_sandbox_gone(sid)
    gate.release(1)
    answer = hibernating.result()
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"status": "error", "error": "Session not found"}
    r = h.client.get(f"/api/sessions/{sid}", headers=h.account.headers)
    assert r.status_code == 404
    assert not h.sandbox_exists(sid)
    if h.provider.kind == "local":
        assert h.snapshots_kept(sid) == []


@pytest.mark.parametrize("n", [200])
def test_many_sessions_cycle_and_end_consistent(harness: HarnessFactory, n: int) -> None:
    h = harness(idle=1, account_max_live_sandboxes=0)  # one account, n sandboxes at once
    ids = [h.create()["id"] for _ in range(n)]
    for sid in ids:
        h.wait_state(sid, "hibernated", timeout=60)
    for sid in ids[: n // 2]:
        assert h.action(sid, "resume").status_code == 200
    for sid in ids:
        s = h.wait_state(sid, "hibernated", timeout=60)
        assert s["sandboxState"] is None and s["snapshotUrl"]
        assert s["lifecycleRunId"] is None


def test_stale_lease_is_taken_over(harness: HarnessFactory) -> None:
    """A watcher whose process died for good (its deadline long past, its lease still set) is
    replaced when someone looks at the session's sandbox."""
    from datetime import timedelta

    from agent_sessions.store.models import utcnow

    h = harness()
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    with h.backend.db.write() as db:
        row = db.get(SessionRow, sid)
        assert row is not None
        row.lifecycle_run_id = "watch-of-a-dead-executor"
        row.hibernate_after = utcnow() - timedelta(minutes=3)
    assert h.sandbox(sid)["lifecycleState"] == "active"  # the read kicks the takeover
    s = h.wait_state(sid, "hibernated")
    assert s["lifecycleRunId"] is None and s["snapshotUrl"]


def test_fresh_lease_is_not_taken_over(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    before = h.wait_state(sid, "active")
    h.sandbox(sid)
    threading.Event().wait(0.5)
    after = h.session(sid)
    assert after["lifecycleRunId"] == before["lifecycleRunId"]
    assert after["lifecycleState"] == "active"


def test_start_reconciles_work_a_crash_left_unstarted(
    backend: Any, harness: HarnessFactory
) -> None:
    """A session committed but never handed to a workflow (the process died in between) is
    provisioned when the lifecycle starts."""
    from agent_sessions.store import sessions as store
    from agent_sessions.store.sessions import NewSession
    from tests.conftest import make_account

    orphan_owner = make_account(backend.db)
    with backend.db.write() as db:
        row, _ = store.create_session(db, account_id=orphan_owner.id, new=NewSession())
    h = harness()  # starting the lifecycle reconciles
    h.account = orphan_owner
    s = h.wait_state(row.id, "active")
    assert s["sandboxState"] is not None
