"""kill -9 of a real ``serve`` (bubblewrap sandboxes) in the middle of lifecycle work.

Each test starts the server with ``AGENT_SESSIONS_FAULT_POINT`` naming a step; the server dies
by SIGKILL there. A second server, started without the fault, must bring every session to a
consistent state through DBOS recovery: no lost files, no orphan sandbox processes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sessions.sandbox import provider_from_settings
from agent_sessions.settings import Settings
from tests.conftest import Backend, Server, make_account, start_server, stop_server

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def _wait(srv: Server, sid: str, headers: dict[str, str], *states: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        s = httpx.get(f"{srv.url}/api/sessions/{sid}", headers=headers).json()["session"]
        if s["lifecycleState"] in states:
            return s
        assert time.monotonic() < deadline, f"stuck in {s['lifecycleState']}: {s}"
        time.sleep(0.1)


def _died(srv: Server, timeout: float = 30) -> None:
    srv.process.wait(timeout=timeout)
    assert srv.process.returncode == -9, srv.log.read_text()


def _sandbox_processes(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "bwrap" in line and str(data_dir) in line]


def _exec(settings: Settings, state: dict[str, Any], command: str) -> str:
    async def go() -> str:
        box = await provider_from_settings(settings).connect(state)
        result = await box.exec(command)
        assert result.exit_code == 0, result
        return result.stdout

    return asyncio.run(go())


_started: list[Server] = []


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    """A data dir sandbox uids can traverse (pytest's tmp_path is 0700 on the way); every server
    a test started is stopped at the end, whatever the test's outcome."""
    path = Path(tempfile.mkdtemp(prefix="agent-sessions-crash-", dir="/tmp"))
    path.chmod(0o711)
    yield path / "data"
    while _started:
        srv = _started.pop()
        if srv.process.poll() is None:
            stop_server(srv)
        else:
            srv.process.wait()
    shutil.rmtree(path, ignore_errors=True)


def _serve(backend: Backend, data: Path, fault: str | None = None, **env: str) -> Server:
    # One executor id per test, kept across its restarts: recovery then picks up this test's
    # runs only, not those other tests left behind in the shared database.
    extra = {"AGENT_SESSIONS_EXECUTOR_ID": f"crash-{data.parent.name}"}
    if fault:
        extra["AGENT_SESSIONS_FAULT_POINT"] = fault
    srv = start_server(data, backend.url, **extra, **env)
    _started.append(srv)
    return srv


def test_kill_during_provisioning(backend: Backend, data: Path) -> None:
    alice = make_account(backend.db)
    srv = _serve(backend, data, "provision.sandbox-created")
    r = httpx.post(f"{srv.url}/api/sessions", json={}, headers=alice.headers)
    assert r.status_code == 200  # acknowledged before the crash
    sid = r.json()["session"]["id"]
    _died(srv)
    srv = _serve(backend, data)
    try:
        s = _wait(srv, sid, alice.headers, "active")
        assert s["sandboxState"] is not None
    finally:
        stop_server(srv)
    assert _sandbox_processes(data) == []


@pytest.mark.parametrize("fault", ["hibernate.snapshotted", "save.written", "save.renamed"])
def test_kill_during_snapshot(backend: Backend, data: Path, fault: str) -> None:
    alice = make_account(backend.db)
    env = {"AGENT_SESSIONS_IDLE_TIMEOUT_SECONDS": "2"}
    srv = _serve(backend, data, fault, **env)
    sid = httpx.post(f"{srv.url}/api/sessions", json={}, headers=alice.headers).json()["session"][
        "id"
    ]
    s = _wait(srv, sid, alice.headers, "active")
    settings = Settings(data_dir=data, database_url=backend.url)
    _exec(settings, s["sandboxState"], "mkdir -p src && echo 'print(42)' > src/main.py")
    _died(srv)  # the watcher hibernates after 2 s and dies at the fault
    srv = _serve(backend, data, **env)
    try:
        s = _wait(srv, sid, alice.headers, "hibernated")
        assert s["snapshotUrl"] and s["snapshotSizeBytes"]
        _resume_finds_main_py(srv, sid, alice.headers, settings)
    finally:
        stop_server(srv)
    assert _sandbox_processes(data) == []


def _resume_finds_main_py(
    srv: Server, sid: str, headers: dict[str, str], settings: Settings
) -> None:
    """Resume the session; the workspace it comes back with has the file written before."""
    r = httpx.post(f"{srv.url}/api/sessions/{sid}/sandbox/resume", headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    s = httpx.get(f"{srv.url}/api/sessions/{sid}", headers=headers).json()["session"]
    assert _exec(settings, s["sandboxState"], "cat src/main.py") == "print(42)\n"


def test_kill_after_a_failed_snapshot_stopped_the_sandbox(backend: Backend, data: Path) -> None:
    """The snapshot store is broken: the workspace is to be kept. A crash just after the
    processes were stopped, before the session records that, must end the same way."""
    alice = make_account(backend.db)
    data.mkdir(parents=True)
    (data / "snapshots").write_text("not a directory")  # every save fails for good
    srv = _serve(backend, data, "hibernate.kept")
    sid = httpx.post(f"{srv.url}/api/sessions", json={}, headers=alice.headers).json()["session"][
        "id"
    ]
    s = _wait(srv, sid, alice.headers, "active")
    settings = Settings(data_dir=data, database_url=backend.url)
    _exec(settings, s["sandboxState"], "mkdir -p src && echo 'print(42)' > src/main.py")
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{srv.url}/api/sessions/{sid}/sandbox/hibernate", headers=alice.headers, timeout=60
        )
    _died(srv)
    srv = _serve(backend, data)
    try:
        s = _wait(srv, sid, alice.headers, "hibernated")
        assert s["snapshotUrl"] is None and s["sandboxState"]["workspaceKept"] is True
        assert "kept" in s["lifecycleError"]
        (data / "snapshots").unlink()
        _resume_finds_main_py(srv, sid, alice.headers, settings)
    finally:
        stop_server(srv)
    assert _sandbox_processes(data) == []


@pytest.mark.parametrize("fault", ["restore.extracting", "restore.restored"])
def test_kill_during_restore(backend: Backend, data: Path, fault: str) -> None:
    alice = make_account(backend.db)
    srv = _serve(backend, data)
    sid = httpx.post(f"{srv.url}/api/sessions", json={}, headers=alice.headers).json()["session"][
        "id"
    ]
    s = _wait(srv, sid, alice.headers, "active")
    settings = Settings(data_dir=data, database_url=backend.url)
    _exec(
        settings,
        s["sandboxState"],
        "head -c 300000 /dev/urandom > blob && sha256sum blob > sum && mkdir many && "
        "for i in $(seq 40); do echo $i > many/f$i; done",
    )
    digest = _exec(settings, s["sandboxState"], "cat sum")
    r = httpx.post(
        f"{srv.url}/api/sessions/{sid}/sandbox/hibernate", headers=alice.headers, timeout=60
    )
    assert r.status_code == 200 and r.json()["lifecycleState"] == "hibernated", r.json()[
        "lifecycleError"
    ]
    stop_server(srv)

    srv = _serve(backend, data, fault)
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{srv.url}/api/sessions/{sid}/sandbox/resume", headers=alice.headers, timeout=60
        )
    _died(srv)
    srv = _serve(backend, data)
    try:
        s = _wait(srv, sid, alice.headers, "active")
        assert (
            _exec(settings, s["sandboxState"], "sha256sum -c sum && cat sum")
            == f"blob: OK\n{digest}"
        )
    finally:
        stop_server(srv)
    assert _sandbox_processes(data) == []


def test_old_snapshots_are_replaced_and_deleted_with_the_session(
    backend: Backend, data: Path
) -> None:
    alice = make_account(backend.db)
    srv = _serve(backend, data)
    try:
        sid = httpx.post(f"{srv.url}/api/sessions", json={}, headers=alice.headers).json()[
            "session"
        ]["id"]
        _wait(srv, sid, alice.headers, "active")
        archives = lambda: sorted((data / "snapshots").glob("*.tar.zst"))  # noqa: E731
        urls = []
        for _ in range(2):
            r = httpx.post(
                f"{srv.url}/api/sessions/{sid}/sandbox/hibernate", headers=alice.headers, timeout=60
            )
            assert r.status_code == 200, r.text
            urls.append(
                httpx.get(f"{srv.url}/api/sessions/{sid}", headers=alice.headers).json()["session"][
                    "snapshotUrl"
                ]
            )
            assert len(archives()) == 1  # the previous snapshot goes once the new one is in
            r = httpx.post(
                f"{srv.url}/api/sessions/{sid}/sandbox/resume", headers=alice.headers, timeout=60
            )
            assert r.status_code == 200, r.text
        assert urls[0] != urls[1]
        httpx.post(
            f"{srv.url}/api/sessions/{sid}/sandbox/hibernate", headers=alice.headers, timeout=60
        )
        assert (
            httpx.delete(f"{srv.url}/api/sessions/{sid}", headers=alice.headers).status_code == 200
        )
        for _ in range(100):
            if not archives():
                break
            time.sleep(0.1)
        assert archives() == []
        assert not list((data / "sandboxes").glob(f"{sid}*")), "a sandbox of it is left"
    finally:
        stop_server(srv)
