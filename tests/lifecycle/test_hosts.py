"""The hosts table's guard rails and its one-winner takeover, on both databases.

Processes are simulated by rows: another host is a row with another hostname (its pid cannot
be checked from here), a crashed one a row with this hostname and a pid that is gone.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from datetime import timedelta

import pytest

from agent_sessions.lifecycle.hosts import HostMonitor, StartupRefused
from agent_sessions.store import hosts
from agent_sessions.store.models import Host, utcnow
from tests.conftest import Backend


def _row(backend: Backend, executor_id: str, *, hostname: str, pid: int, ago: float) -> None:
    at = utcnow() - timedelta(seconds=ago)
    with backend.db.write() as s:
        s.merge(Host(
            executor_id=executor_id, instance="other", hostname=hostname, pid=pid, url=None,
            sandbox_provider="local", state="live", started_at=at, heartbeat_at=at,
        ))  # fmt: skip


def _clear(backend: Backend) -> None:
    with backend.db.write() as s:
        s.query(Host).delete()


@pytest.fixture
def clean(backend: Backend) -> Backend:
    _clear(backend)
    yield backend
    _clear(backend)


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_live_process_with_the_same_executor_id_is_refused(clean: Backend) -> None:
    _row(clean, "web-1", hostname="elsewhere.example", pid=4242, ago=2)
    monitor = HostMonitor(clean.settings(executor_id="web-1"), clean.db)
    with pytest.raises(StartupRefused, match=r"executor id 'web-1' is in use by a live process "
                       r"\(pid 4242 on elsewhere\.example"):  # fmt: skip
        monitor.register()
    with clean.db.read() as s:
        assert s.get(Host, "web-1").instance == "other"  # nothing recorded


def test_a_restart_after_a_crash_or_a_silence_is_not_refused(clean: Backend) -> None:
    _row(clean, "web-1", hostname=socket.gethostname(), pid=_gone_pid(), ago=1)  # crashed here
    HostMonitor(clean.settings(executor_id="web-1"), clean.db).register()
    _row(clean, "web-2", hostname="elsewhere.example", pid=1, ago=120)  # silent for long
    HostMonitor(clean.settings(executor_id="web-2"), clean.db).register()
    with clean.db.read() as s:
        assert set(hosts.live(s, alive_after=utcnow() - timedelta(seconds=10))) == {
            "web-1", "web-2"
        }  # fmt: skip


def test_configurations_that_cannot_work_are_refused(clean: Backend) -> None:
    _row(clean, "web-1", hostname="elsewhere.example", pid=4242, ago=1)
    settings = clean.settings(executor_id="web-2", agent_global_concurrency=8)
    if settings.is_sqlite:
        why = r"already serves this SQLite database: SQLite serves one process"
    else:
        why = r"AGENT_SESSIONS_AGENT_GLOBAL_CONCURRENCY hands turns to any process"
    with pytest.raises(StartupRefused, match=why):
        HostMonitor(settings, clean.db).register()
    if not settings.is_sqlite:  # without the global limit each host runs its own turns
        HostMonitor(clean.settings(executor_id="web-2"), clean.db).register()


def test_a_silent_host_is_taken_over_by_exactly_one(clean: Backend) -> None:
    _row(clean, "dead", hostname="elsewhere.example", pid=1, ago=60)
    cutoff = utcnow() - timedelta(seconds=20)
    won: list[str] = []
    barrier = threading.Barrier(4)

    def contend(me: str) -> None:
        barrier.wait()
        with clean.db.write() as s:
            if hosts.take_over(s, "dead", by=me, alive_after=cutoff, now=utcnow()):
                won.append(me)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    with clean.db.read() as s:
        row = s.get(Host, "dead")
        assert row.state == "gone" and row.taken_over_by == won[0]
        assert hosts.silent(s, alive_after=cutoff) == []


def test_a_host_that_was_taken_over_stops_beating(clean: Backend) -> None:
    monitor = HostMonitor(clean.settings(executor_id="web-1"), clean.db)
    monitor.register()
    with clean.db.write() as s:
        assert hosts.beat(s, "web-1", monitor.instance, utcnow())
        later = utcnow() + timedelta(seconds=1)
        assert hosts.take_over(s, "web-1", by="web-2", alive_after=later, now=later)
        assert not hosts.beat(s, "web-1", monitor.instance, utcnow())  # it must stop


def test_a_worker_with_local_sandboxes_is_refused_where_hosts_share_work(clean: Backend) -> None:
    """No request can reach a local sandbox a worker made; on SQLite (one process) it may run."""
    monitor = HostMonitor(clean.settings(executor_id="w-1"), clean.db, serves_http=False)
    if clean.settings().is_sqlite:
        monitor.register()
        return
    with pytest.raises(StartupRefused, match="a worker serves no HTTP"):
        monitor.register()
    assert monitor.check() is not None
