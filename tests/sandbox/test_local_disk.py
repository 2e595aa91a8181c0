"""Per-sandbox disk limits of the local provider: loop-mounted ext4 images (issue 14, #6).

Real parts throughout: bubblewrap sandboxes, real images, real mounts. Where the host cannot
mount loop images the enforcing tests skip and say why; detection and reporting are tested
everywhere (an unmountable case is made real with a read-only directory).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from agent_sessions.faults import FAULT_ENV
from agent_sessions.sandbox import Sandbox, SandboxUnavailable
from agent_sessions.sandbox.local import LocalProvider, LocalSandbox, disk
from agent_sessions.sandbox.local import provider as provider_module
from agent_sessions.snapshots import LocalSnapshotStore
from tests.sandbox.conftest import local_settings, local_unavailable_reason

pytestmark = pytest.mark.anyio

MiB = 1 << 20
LIMIT = 64 * MiB


@pytest.fixture
def make_provider(sandbox_data_dir: Path) -> Iterator[Callable[..., LocalProvider]]:
    if reason := local_unavailable_reason():
        pytest.skip(reason)

    def make(**overrides: object) -> LocalProvider:
        return LocalProvider(
            local_settings(sandbox_data_dir / "data", **overrides),
            LocalSnapshotStore(sandbox_data_dir / "snapshots"),
        )

    yield make


@pytest.fixture
async def limited(make_provider: Callable[..., LocalProvider]) -> AsyncIterator[LocalProvider]:
    """A provider enforcing a 64 MiB limit; its sandboxes are destroyed (unmounted) after."""
    if os.geteuid() != 0:
        pytest.skip("NEEDS ROOT: disk limits are loop mounts")
    provider = make_provider(sandbox_disk_bytes=LIMIT)
    if not provider.disk.available:
        pytest.skip(f"DISK LIMIT NOT ENFORCEABLE ON THIS HOST: {provider.disk.reason}")
    yield provider
    for home in provider.root.iterdir():
        if not home.name.startswith("."):
            box = await provider.connect({"provider": "local", "name": home.name})
            await box.destroy()
    assert _mounts_under(provider.root) == []


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(root))]


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


async def _run(box: Sandbox, command: str) -> tuple[int, str]:
    done = await box.exec(command)
    return done.exit_code, done.stdout + done.stderr


# --- detection and reporting ----------------------------------------------------------------


def test_no_limit_is_reported_in_capabilities_and_the_start_up_log(
    make_provider: Callable[..., LocalProvider],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(provider_module, "_warned", set())  # the warning is once per process
    with caplog.at_level(logging.WARNING):
        caps = make_provider().capabilities()
    assert caps["diskLimit"] is False and caps["diskLimitBytes"] is None
    assert "AGENT_SESSIONS_SANDBOX_DISK_BYTES is not set" in caps["diskReason"]
    assert f"without a disk limit: {caps['diskReason']}" in caplog.text


def test_an_unenforceable_limit_says_why(tmp_path: Path) -> None:
    """Not root, a tool missing, or a trial image that cannot be made: never silently off."""
    not_root = disk.detect(LIMIT, tmp_path, as_root=False)
    assert not not_root.available and "root" in not_root.reason
    if os.geteuid() != 0:
        return
    scratch = tmp_path / "read-only"
    scratch.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", scratch], check=True)
    try:
        failed = disk.detect(LIMIT, scratch, as_root=True)
    finally:
        subprocess.run(["umount", scratch], check=True)
    assert not failed.available
    assert "do not work on this host" in failed.reason and "Read-only" in failed.reason


def test_a_missing_tool_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk, "_TOOLS", (*disk._TOOLS, "mkfs.no-such-tool"))
    support = disk.detect(LIMIT, tmp_path, as_root=True)
    assert not support.available and "mkfs.no-such-tool" in support.reason


async def test_an_enforced_limit_is_reported(limited: LocalProvider) -> None:
    caps = limited.capabilities()
    assert caps["diskLimit"] is True and caps["diskLimitBytes"] == LIMIT


# --- enforcing ---------------------------------------------------------------------------------


async def test_a_sandbox_stops_at_its_limit_and_works_again_after_a_delete(
    limited: LocalProvider,
) -> None:
    box = await limited.create("full")
    assert isinstance(box, LocalSandbox)
    code, out = await _run(box, "dd if=/dev/zero of=big bs=1M count=100")
    assert code != 0 and "No space left on device" in out, out
    assert _allocated(box.disk.image) <= LIMIT  # all the host gave, whatever was asked

    neighbour = await limited.create("neighbour")  # other sandboxes are not affected
    assert await _run(neighbour, "head -c 10M /dev/zero > ten && echo ok") == (0, "ok\n")

    assert await _run(box, "rm big && echo again > f && cat f") == (0, "again\n")


async def test_the_image_is_private_and_the_workspace_the_sandbox_s(
    limited: LocalProvider,
) -> None:
    box = await limited.create("owned")
    assert isinstance(box, LocalSandbox) and box.uid is not None
    image = box.disk.image.stat()
    assert (image.st_uid, stat.S_IMODE(image.st_mode)) == (0, 0o600)
    assert image.st_size == LIMIT and image.st_blocks * 512 < 8 * MiB  # sparse
    root = box.workspace.stat()
    assert (root.st_uid, stat.S_IMODE(root.st_mode)) == (box.uid, 0o700)
    assert os.listdir(box.workspace) == []  # no lost+found
    assert _mounts_under(limited.root) == [str(box.workspace)]


async def test_the_image_is_mounted_again_after_a_reboot(limited: LocalProvider) -> None:
    box = await limited.create("rebooted")
    await box.write_file("notes.txt", b"still here")
    await anyio.run_process(["umount", str(box.workspace)])  # what a reboot leaves
    assert os.listdir(box.workspace) == []

    again = await limited.connect(box.state)
    assert await again.read_file("notes.txt") == b"still here"
    assert (await _run(again, "dd if=/dev/zero of=big bs=1M count=100"))[0] != 0


async def test_turning_the_limit_off_keeps_existing_images(
    limited: LocalProvider, make_provider: Callable[..., LocalProvider]
) -> None:
    box = await limited.create("kept")
    await box.write_file("notes.txt", b"mine")
    await anyio.run_process(["umount", str(box.workspace)])
    unlimited = make_provider()
    assert not unlimited.disk.available

    again = await unlimited.connect(box.state)
    assert await again.read_file("notes.txt") == b"mine"
    plain = await unlimited.create("plain")
    assert isinstance(plain, LocalSandbox) and not plain.disk.exists()
    await plain.destroy()


async def test_restore_swaps_in_a_new_image(limited: LocalProvider) -> None:
    box = await limited.create("restored")
    assert isinstance(box, LocalSandbox)
    assert (await _run(box, "echo one > f && truncate -s 1G sparse"))[0] == 0
    info = await box.snapshot()
    assert (await _run(box, "echo two > f && head -c 20M /dev/zero > extra"))[0] == 0
    old_image = box.disk.image.stat().st_ino

    await box.restore(info.url)

    assert await _run(box, "cat f && ls") == (0, "one\nf\nsparse\n")
    assert box.disk.image.stat().st_ino != old_image
    assert _mounts_under(limited.root) == [str(box.workspace)]
    assert sorted(p.name for p in box.home.iterdir() if p.name.startswith(".")) == []


async def test_a_snapshot_too_big_for_the_limit_is_refused_and_the_workspace_kept(
    limited: LocalProvider, make_provider: Callable[..., LocalProvider]
) -> None:
    unlimited = make_provider()
    big = await unlimited.create("big")
    assert (await _run(big, "head -c 80M /dev/urandom > data"))[0] == 0
    info = await big.snapshot()
    await big.destroy()

    box = await limited.create("small")
    assert isinstance(box, LocalSandbox)
    await box.write_file("mine.txt", b"untouched")
    with pytest.raises(SandboxUnavailable, match="does not fit in the sandbox's disk limit"):
        await box.restore(info.url)
    again = await limited.connect(box.state)
    assert await again.read_file("mine.txt") == b"untouched"
    assert _mounts_under(limited.root) == [str(box.workspace)]
    assert [p.name for p in box.home.iterdir() if p.name.startswith(".disk-")] == []


async def test_staging_images_of_dead_restores_go_at_start_up(
    limited: LocalProvider, make_provider: Callable[..., LocalProvider]
) -> None:
    """A restore cut short (the process died) leaves a mounted staging image; the next start
    removes it. A restore still running (its home locked) is left alone."""
    box = await limited.create("crashed")
    busy = await limited.create("busy")
    assert isinstance(box, LocalSandbox) and isinstance(busy, LocalSandbox)
    dead = box.disk.begin_restore(32 * MiB, None)
    dead.release()  # its process is gone: nothing holds the lock
    live = busy.disk.begin_restore(32 * MiB, None)
    try:
        make_provider(sandbox_disk_bytes=LIMIT)  # a service starting

        assert not dead.path.exists() and not dead.mountpoint.exists()
        assert live.path.exists() and live.mountpoint.is_mount()
    finally:
        live.discard()
    assert sorted(_mounts_under(limited.root)) == sorted([str(box.workspace), str(busy.workspace)])


async def test_destroy_unmounts_and_removes_everything(limited: LocalProvider) -> None:
    box = await limited.create("gone")
    assert isinstance(box, LocalSandbox)
    left_behind = box.disk.begin_restore(32 * MiB, None)
    left_behind.release()
    await box.destroy()
    assert not box.home.exists()
    assert _mounts_under(limited.root) == []


_CHILD = """
import asyncio, json, sys
from pathlib import Path
from agent_sessions.sandbox.local import LocalProvider
from agent_sessions.settings import Settings
from agent_sessions.snapshots import LocalSnapshotStore
cfg = json.loads(sys.argv[1])
settings = Settings(data_dir=Path(cfg["data"]), sandbox_uid_base=cfg["uid_base"],
                    sandbox_uid_count=100, sandbox_disk_bytes=cfg["limit"])
async def main():
    provider = LocalProvider(settings, LocalSnapshotStore(Path(cfg["snapshots"])))
    box = await provider.connect({"provider": "local", "name": cfg["name"]})
    await box.restore(cfg["url"])
asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("fault", "then"),
    [
        ("restore.extracted", "old"),  # the new image mounted beside, full, not yet swapped
        ("disk.staging-unmounted", "old"),
        ("disk.old-unmounted", "old"),  # nothing mounted at the workspace
        ("disk.committed", "new"),  # the new image named, not mounted yet
    ],
)
async def test_a_crash_during_the_image_swap_leaves_a_whole_workspace(
    limited: LocalProvider, sandbox_data_dir: Path, fault: str, then: str
) -> None:
    """SIGKILL at each step of a restore into an image; the next service finds the old or
    the new workspace whole, and a retried restore finishes and leaves nothing behind."""
    box = await limited.create("crash")
    assert isinstance(box, LocalSandbox)
    await box.write_file("version", b"new")
    info = await box.snapshot()
    await box.write_file("version", b"old")
    cfg = {
        "data": str(sandbox_data_dir / "data"),
        "snapshots": str(sandbox_data_dir / "snapshots"),
        "uid_base": limited.uids.base,
        "limit": LIMIT,
        "name": "crash",
        "url": info.url,
    }
    env = {**os.environ, FAULT_ENV: fault}
    child = await anyio.run_process(
        [sys.executable, "-c", _CHILD, json.dumps(cfg)], env=env, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    restarted = LocalProvider(
        local_settings(sandbox_data_dir / "data", sandbox_disk_bytes=LIMIT), limited.snapshots
    )
    again = await restarted.connect(box.state)
    assert await again.read_file("version") == then.encode()
    await again.restore(info.url)
    assert await again.read_file("version") == b"new"
    assert _mounts_under(limited.root) == [str(box.workspace)]
    assert [p.name for p in box.home.iterdir() if p.name.startswith(".")] == []


async def test_host_side_writes_to_a_full_workspace_are_a_clear_error(
    limited: LocalProvider,
) -> None:
    """The service's own writes (the agent's ``write`` tool, the files API) get an error of
    the sandbox tree, which the agent hands to the model and the API answers with 409, not a
    bare ``OSError``."""
    from agent_sessions.sandbox.errors import WorkspaceFull

    box = await limited.create("full-from-host")
    assert (await _run(box, "dd if=/dev/zero of=big bs=1M count=100"))[0] != 0
    with pytest.raises(WorkspaceFull, match="disk limit"):
        await box.write_file("notes.txt", os.urandom(1 << 20))
    assert (await _run(box, "rm big"))[0] == 0
    await box.write_file("notes.txt", b"fits now")
    assert await box.read_file("notes.txt") == b"fits now"
