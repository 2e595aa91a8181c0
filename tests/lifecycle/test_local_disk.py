"""Workspace disk through the real lifecycle on the real bubblewrap provider (issue 14, #6).

The rest of this suite runs on the fake provider for speed; these tests need what only the
local provider does with a workspace: sparse files kept through hibernate and resume, and a
per-sandbox disk limit (a loop-mounted image) that stops a sandbox, not the service.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.sandbox.local import LocalProvider
from agent_sessions.snapshots import LocalSnapshotStore
from tests.conftest import traversable_tmpdir
from tests.lifecycle.conftest import Harness, HarnessFactory
from tests.sandbox.conftest import local_settings, local_unavailable_reason

MiB, GiB = 1 << 20, 1 << 30

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def local() -> Iterator[Callable[..., LocalProvider]]:
    """Real local providers on a data dir sandbox uids can traverse; every sandbox they made
    is destroyed at the end (images unmounted). Requested before ``harness``, so it is torn
    down after the app has stopped."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    made: list[LocalProvider] = []
    with traversable_tmpdir("agent-sessions-disk-") as data:

        def make(**overrides: object) -> LocalProvider:
            settings = local_settings(data / "sbx", **overrides)
            provider = LocalProvider(settings, LocalSnapshotStore(data / "snapshots"))
            made.append(provider)
            return provider

        yield make
        for provider in made:
            asyncio.run(_destroy_all(provider))


async def _destroy_all(provider: LocalProvider) -> None:
    for home in provider.root.iterdir():
        if not home.name.startswith("."):
            box = await provider.connect({"provider": "local", "name": home.name})
            await box.destroy()


def _exec(h: Harness, session: dict[str, Any], command: str) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        box = await h.sandbox_of(session)
        done = await box.exec(command)
        return done.exit_code, done.stdout + done.stderr

    return asyncio.run(go())


def _allocated(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _hibernate_and_resume(h: Harness, sid: str) -> dict[str, Any]:
    r = h.action(sid, "hibernate")
    assert r.status_code == 200, r.text
    slept = h.wait_state(sid, "hibernated")
    r = h.action(sid, "resume")
    assert r.status_code == 200, r.text
    back = h.wait_state(sid, "active")
    back["snapshotSizeBytes"] = slept["snapshotSizeBytes"]
    return back


def test_sparse_files_stay_sparse_through_hibernate_and_resume(
    local: Callable[..., LocalProvider], harness: HarnessFactory
) -> None:
    """The review's steps: three ``truncate -s 1G`` in the sandbox, hibernate, resume."""
    provider = local()
    h = harness(provider=provider)
    sid = h.create()["id"]
    active = h.wait_state(sid, "active")
    code, out = _exec(h, active, "truncate -s 1G a b c && printf kept > d")
    assert code == 0, out

    back = _hibernate_and_resume(h, sid)

    assert back["snapshotSizeBytes"] < MiB
    code, out = _exec(h, back, "stat -c '%n %s' a b c && cat d")
    assert code == 0, out
    assert out.split("\n") == ["a 1073741824", "b 1073741824", "c 1073741824", "kept"]
    workspace = provider.root / back["sandboxState"]["name"] / "workspace"
    assert _allocated(workspace) < 4 * MiB, f"{_allocated(workspace) / MiB:.0f} MiB on disk"


def test_a_full_workspace_stops_the_sandbox_not_the_service(
    local: Callable[..., LocalProvider], harness: HarnessFactory
) -> None:
    """With a 64 MiB limit, ``dd`` ends with ENOSPC in the sandbox; the service and its
    database go on; once the file is gone the sandbox works again, and the limit (and the
    files) hold through hibernate and resume."""
    provider = local(sandbox_disk_bytes=64 * MiB)
    if not provider.disk.available:
        pytest.skip(f"DISK LIMIT NOT ENFORCEABLE ON THIS HOST: {provider.disk.reason}")
    h = harness(provider=provider)
    sid = h.create()["id"]
    active = h.wait_state(sid, "active")

    code, out = _exec(h, active, "printf before > keep && dd if=/dev/zero of=big bs=1M count=100")
    assert code != 0 and "No space left on device" in out, out

    assert h.sandbox(sid)["lifecycleState"] == "active"
    assert h.action(sid, "activity").status_code == 200  # a database write
    other = h.create()["id"]  # another sandbox, on the same host disk
    code, out = _exec(h, h.wait_state(other, "active"), "head -c 10M /dev/zero > ten && echo ok")
    assert (code, out) == (0, "ok\n")

    code, out = _exec(h, active, "rm big && printf after > more && cat keep more")
    assert (code, out) == (0, "beforeafter")

    back = _hibernate_and_resume(h, sid)
    code, out = _exec(h, back, "cat keep more; dd if=/dev/zero of=big bs=1M count=100")
    assert out.startswith("beforeafter") and "No space left on device" in out, out
