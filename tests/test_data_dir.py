"""The data directory belongs to the service's user: databases, snapshots and bookkeeping are
0600/0700; only the path down to each workspace stays traversable for the sandboxes' uids."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_account, start_server, stop_server, traversable_tmpdir
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason

TRAVERSE_ONLY = 0o711
"""Directories a sandbox uid must pass through to reach its workspace (no listing)."""
SANDBOX_SYSTEM = ".system"
"""The sandboxes' shared read-only /etc files (passwd, group, hosts): theirs to read."""


def _exposed(data_dir: Path) -> list[str]:
    """Entries outside the sandboxes' own trees that another local user could read or write."""
    sandboxes = data_dir / "sandboxes"
    found = []
    for path in [data_dir, *data_dir.rglob("*")]:
        rel = path.relative_to(data_dir)
        if rel.parts[:2] == ("sandboxes", SANDBOX_SYSTEM) or _in_a_workspace(rel):
            continue
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        traverse = path in (data_dir, sandboxes) or path.parent == sandboxes
        allowed = TRAVERSE_ONLY if stat.S_ISDIR(st.st_mode) and traverse else 0o700
        if stat.S_ISLNK(st.st_mode):
            continue
        if mode & ~allowed & 0o777:
            found.append(f"{oct(mode)} {rel}")
    return found


def _in_a_workspace(rel: Path) -> bool:
    return len(rel.parts) >= 3 and rel.parts[0] == "sandboxes" and rel.parts[2] == "workspace"


def _wait_state(url: str, sid: str, headers: dict[str, str], state: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = httpx.get(f"{url}/api/sessions/{sid}", headers=headers).json()["session"]
        if got["lifecycleState"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"session never became {state}: {got['lifecycleState']}, {got.get('lifecycleError')}"
    )


def test_what_the_service_writes_is_its_users_only() -> None:
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with traversable_tmpdir("agent-sessions-perm-") as tmp:
        data_dir = tmp / "data"
        # sandbox uids of its own (the default range is every such server's)
        srv = start_server(
            data_dir,
            AGENT_SESSIONS_SANDBOX_UID_BASE=str(UID_BASE + 190),
            AGENT_SESSIONS_SANDBOX_UID_COUNT="10",
        )
        try:
            from agent_sessions.store import Database

            db = Database(f"sqlite:///{data_dir / 'agent-sessions.db'}")
            alice = make_account(db)
            db.dispose()
            created = httpx.post(f"{srv.url}/api/sessions", json={}, headers=alice.headers)
            sid = created.json()["session"]["id"]
            _wait_state(srv.url, sid, alice.headers, "active")
            r = httpx.post(f"{srv.url}/api/sessions/{sid}/sandbox/hibernate", headers=alice.headers)
            assert r.status_code == 200, r.text
            _wait_state(srv.url, sid, alice.headers, "hibernated")
            assert list((data_dir / "snapshots").iterdir()), "a snapshot was written"
            assert _exposed(data_dir) == []
        except AssertionError:
            print(srv.log.read_text()[-6000:])  # shown with the failure: what the server said
            raise
        finally:
            stop_server(srv)


def test_an_existing_data_dir_is_tightened_at_start() -> None:
    """A data directory written by an earlier version (0644 databases, a 0755 snapshot
    directory) is made private when the service starts on it."""
    with traversable_tmpdir("agent-sessions-perm-") as tmp:
        data_dir = tmp / "data"
        stop_server(start_server(data_dir))
        (data_dir / "snapshots").mkdir(exist_ok=True)
        (data_dir / "snapshots" / "old.tar.zst").write_bytes(b"x")
        for path in [data_dir, *data_dir.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644, follow_symlinks=False)
        assert _exposed(data_dir) != []
        srv = start_server(data_dir)
        try:
            assert _exposed(data_dir) == []
        finally:
            stop_server(srv)
