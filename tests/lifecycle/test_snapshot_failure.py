"""A snapshot that fails must not leave a sandbox running unwatched (issue 14, finding 4).

On the real bubblewrap provider: a process that keeps truncating files used to fail the
snapshot ("file shrank while being archived"), the session went ``failed`` and the process ran
on with no watcher and no timeout. Now the sandbox is frozen before it is archived; a snapshot
that still cannot be made (here: the snapshot store is broken) stops every process, keeps the
workspace on disk and leaves the session ``hibernated``, resumable from that workspace.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.sandbox.fake import FakeProvider
from agent_sessions.sandbox.local import LocalProvider, LocalSandbox
from agent_sessions.sandbox.local.processes import sandbox_pids
from agent_sessions.snapshots import LocalSnapshotStore
from agent_sessions.store.lifecycle import WORKSPACE_KEPT
from tests.conftest import traversable_tmpdir
from tests.lifecycle.conftest import Harness, HarnessFactory
from tests.sandbox.conftest import local_settings, local_unavailable_reason
from tests.support.waiting import until

TRUNCATING = (
    "while :; do for f in a b c; do truncate -s 0 $f; truncate -s 64M $f; done; sleep 0.02; done"
)
"""Three 64 MiB (sparse) files, each emptied and refilled in turn every few tens of
milliseconds. Archiving 64 MiB takes longer than that, and at most one file is empty at a
time: an archive that runs beside the loop finds a file that shrinks under it."""


class Local:
    """The real local provider, and the test's own calls into its sandboxes on one event loop
    that lives as long as the test (a detached command's reaper runs on it)."""

    def __init__(self, provider: LocalProvider) -> None:
        self.provider = provider
        self.runner = asyncio.Runner()
        self.boxes: list[LocalSandbox] = []

    def box(self, session: dict[str, Any]) -> LocalSandbox:
        box = self.runner.run(self.provider.connect(session["sandboxState"]))
        assert isinstance(box, LocalSandbox)
        self.boxes.append(box)
        return box

    def exec(self, box: LocalSandbox, command: str, **kwargs: Any) -> str:
        result = self.runner.run(box.exec(command, **kwargs))
        assert result.exit_code == 0, result
        return result.stdout

    def close(self) -> None:
        """Whatever the test's outcome: nothing left running, every reaper done."""
        for box in self.boxes:
            self.runner.run(box.stop())
        self.runner.close()


@pytest.fixture
def local() -> Iterator[Local]:
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with traversable_tmpdir("agent-sessions-snapfail-") as root:
        store = LocalSnapshotStore(root / "snapshots")
        driver = Local(LocalProvider(local_settings(root), store))
        yield driver
        driver.close()


def _start_truncating(local: Local, box: LocalSandbox) -> None:
    """Start the truncating loop detached, and wait until it runs."""
    local.exec(box, TRUNCATING, detached=True)
    until("the loop to start", lambda: (box.workspace / "c").exists())
    assert sandbox_pids(box.uid, box._marker)


def _tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root``: kind, permission bits, and content hash or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), digest)
    return out


_CONTENT = (
    "mkdir -p src && echo 'print(42)' > src/main.py && head -c 200000 /dev/urandom > blob "
    "&& chmod 640 blob && ln -s src/main.py link"
)


def _break_store(local: Local) -> Path:
    """Make every save fail for good: the store's directory becomes a plain file."""
    assert isinstance(local.provider.snapshots, LocalSnapshotStore)
    root = local.provider.snapshots.root
    shutil.rmtree(root, ignore_errors=True)
    root.write_text("not a directory")
    return root


def _active_with_truncating_loop(h: Harness, local: Local) -> tuple[str, LocalSandbox]:
    sid = h.create()["id"]
    box = local.box(h.wait_state(sid, "active", timeout=60))
    local.exec(box, _CONTENT)
    _start_truncating(local, box)
    return sid, box


def test_hibernate_freezes_a_process_that_keeps_truncating_files(
    harness: HarnessFactory, local: Local
) -> None:
    h = harness(provider=local.provider)
    sid, box = _active_with_truncating_loop(h, local)

    r = h.action(sid, "hibernate")
    assert r.status_code == 200, r.text
    s = h.session(sid)
    assert s["lifecycleState"] == "hibernated", s["lifecycleError"]
    assert s["lifecycleError"] is None and s["snapshotUrl"] and s["sandboxState"] is None
    assert sandbox_pids(box.uid, box._marker) == [], "processes outlived the hibernation"

    assert h.action(sid, "resume").status_code == 200
    restored = local.box(h.session(sid))
    assert local.exec(restored, "cat src/main.py") == "print(42)\n"
    # Frozen between two truncates: each file is whole or empty, never half of it.
    sizes = local.exec(restored, "stat -c %s a b c").split()
    assert set(sizes) <= {"0", str(64 << 20)}, sizes


def test_a_snapshot_that_cannot_be_made_keeps_the_workspace_and_stops_everything(
    harness: HarnessFactory, local: Local
) -> None:
    h = harness(provider=local.provider)
    sid, box = _active_with_truncating_loop(h, local)
    store = _break_store(local)

    r = h.action(sid, "hibernate")
    assert r.status_code == 200, r.text
    s = h.session(sid)
    assert s["lifecycleState"] == "hibernated", s["lifecycleError"]
    assert "Snapshot failed" in s["lifecycleError"] and "kept" in s["lifecycleError"]
    # The store's error names its directory; the client is shown no host path.
    for host_path in (store, store.parent, box.workspace):
        assert str(host_path) not in s["lifecycleError"], s["lifecycleError"]
    assert s["snapshotUrl"] is None and s["sandboxState"][WORKSPACE_KEPT] is True
    assert sandbox_pids(box.uid, box._marker) == [], "processes outlived the failed snapshot"
    assert local.runner.run(box.status()) == "stopped"
    kept = _tree(box.workspace)  # nothing runs: the workspace holds still
    assert "src/main.py" in kept and "blob" in kept

    store.unlink()
    r = h.action(sid, "resume")
    assert r.status_code == 200, r.text
    s = h.session(sid)
    assert s["lifecycleState"] == "active" and s["lifecycleError"] is None
    assert WORKSPACE_KEPT not in s["sandboxState"]
    resumed = local.box(s)
    assert _tree(resumed.workspace) == kept
    assert local.exec(resumed, "cat link") == "print(42)\n"

    # The next hibernation tries again, and now it can.
    assert h.action(sid, "hibernate").status_code == 200
    s = h.session(sid)
    assert s["lifecycleState"] == "hibernated" and s["lifecycleError"] is None
    assert s["snapshotUrl"] and s["sandboxState"] is None
    assert not resumed.workspace.exists()


def test_archive_whose_snapshot_fails_keeps_the_workspace_for_unarchive(
    harness: HarnessFactory, local: Local
) -> None:
    h = harness(provider=local.provider)
    sid, box = _active_with_truncating_loop(h, local)
    _break_store(local)

    r = h.client.patch(
        f"/api/sessions/{sid}", json={"status": "archived"}, headers=h.account.headers
    )
    assert r.status_code == 200, r.text
    until("the archive to finish", lambda: h.session(sid)["lifecycleError"] is not None)
    s = h.session(sid)
    assert (
        s["lifecycleState"] == "archived" and "Archive finalization failed" in (s["lifecycleError"])
    )
    assert s["sandboxState"][WORKSPACE_KEPT] is True
    assert sandbox_pids(box.uid, box._marker) == []
    kept = _tree(box.workspace)

    r = h.client.patch(
        f"/api/sessions/{sid}", json={"status": "running"}, headers=h.account.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["session"]["lifecycleState"] == "hibernated"
    assert h.action(sid, "resume").status_code == 200
    assert _tree(local.box(h.session(sid)).workspace) == kept


class _NoSnapshots(FakeProvider):
    """Every snapshot fails, as a store that is down would make it."""

    async def connect(self, state: Any) -> Any:
        box = await super().connect(state)

        async def broken() -> Any:
            raise OSError("snapshot store is down (injected)")

        box.snapshot = broken  # type: ignore[method-assign]
        return box


def test_a_kept_workspace_that_vanished_fails_the_restore_clearly(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    provider = _NoSnapshots(tmp_path / "boxes")
    h = harness(provider=provider)
    sid = h.create()["id"]
    h.wait_state(sid, "active")
    assert h.action(sid, "hibernate").status_code == 200
    s = h.session(sid)
    assert s["lifecycleState"] == "hibernated" and "store is down" in s["lifecycleError"]
    shutil.rmtree(provider.root / sid)  # the host lost the kept workspace

    r = h.action(sid, "resume")
    assert r.status_code == 409 and "is gone" in r.json()["error"], r.text
    s = h.session(sid)
    assert s["lifecycleState"] == "failed" and s["sandboxState"] is None
    r = h.action(sid, "resume")  # no snapshot to fall back on: it stays failed, and says so
    assert r.status_code == 409 and "is gone" in r.json()["error"], r.text
