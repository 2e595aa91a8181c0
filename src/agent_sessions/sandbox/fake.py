"""A fake provider for unit tests of the layers above. **No isolation whatsoever.**

Commands run as plain host subprocesses (``bash -c``) in a temporary directory, with the
service's uid and a minimal environment; nothing stops them from reading or writing anywhere
else. Use it where a test needs a working sandbox quickly and no untrusted code runs — never in
a deployment. Snapshots are copies kept in memory of the provider (``fake://`` URLs).
File access goes through the same no-symlink, beneath-the-workspace code as the local provider,
so path-validation behaviour matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_sessions.inflight import hold
from agent_sessions.sandbox._openat2 import split_relative
from agent_sessions.sandbox._output import HeadTail, capture_pair
from agent_sessions.sandbox._workspace_fs import HostFileOps, WorkspaceFS
from agent_sessions.sandbox.base import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_TIMEOUT,
    ExecResult,
    OutputListener,
    Sandbox,
    SandboxProvider,
    SandboxStatus,
    SnapshotInfo,
    validate_name,
)
from agent_sessions.sandbox.errors import PathConflict, SandboxNotFound, SandboxUnavailable
from agent_sessions.snapshots.base import new_snapshot_id

__all__ = ["FakeProvider", "FakeSandbox"]

_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}


async def _exited(pid: int) -> None:
    """Wait for the process itself to exit (``Process.wait`` also waits for its pipes to
    close, which a leftover background job keeps open)."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # already exited and reaped
        return
    done = loop.create_future()
    loop.add_reader(fd, lambda: None if done.done() else done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _all_stopped(groups: set[int]) -> bool:
    """Whether every process in these process groups is stopped (or gone)."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # it went away
            continue
        if int(fields[2]) in groups and fields[0] not in ("T", "t", "Z", "X"):
            return False
    return True


def _stop_groups(groups: set[int]) -> None:
    """SIGSTOP these process groups and wait until it has landed (blocking)."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGSTOP)
    while not _all_stopped(groups):
        time.sleep(0.001)


class FakeProvider(SandboxProvider):
    """Sandboxes as directories under ``root`` (a fresh temporary directory by default)."""

    kind = "fake"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="agent-sessions-fake-"))
        self.snapshots: dict[str, Path] = {}
        self._snapshot_root = self.root / ".snapshots"
        self._detached: dict[str, set[asyncio.subprocess.Process]] = {}
        """Detached commands by sandbox name: a reconnected handle stops them too."""

    def capabilities(self) -> dict[str, Any]:
        return {"kind": self.kind, "isolation": "none (tests only)"}

    async def create(self, name: str) -> Sandbox:
        box = FakeSandbox(self, validate_name(name))
        box.workspace.mkdir(parents=True, exist_ok=True)
        return box

    async def connect(self, state: Mapping[str, Any]) -> Sandbox:
        if state.get("provider") != self.kind or not isinstance(state.get("name"), str):
            raise SandboxNotFound("not a fake sandbox state")
        box = FakeSandbox(self, validate_name(state["name"]))
        if not box.workspace.is_dir():
            raise SandboxNotFound(f"sandbox {box.name!r} does not exist")
        return box


class FakeSandbox(HostFileOps, Sandbox):
    def __init__(self, provider: FakeProvider, name: str) -> None:
        self.provider = provider
        self.name = name
        self.workspace = provider.root / name
        self.fs = WorkspaceFS(self.workspace, None)
        self._stopped = False
        self._detached = provider._detached.setdefault(name, set())

    @property
    def state(self) -> dict[str, Any]:
        return {"provider": "fake", "name": self.name}

    async def exec(
        self,
        command: str,
        *,
        cwd: str = ".",
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the process group is killed)
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
        on_output: OutputListener | None = None,
    ) -> ExecResult:
        parts = split_relative(cwd)
        if (await self.stat(cwd)).kind != "dir":
            raise PathConflict(f"cwd is not a directory: {cwd!r}")
        self._stopped = False
        full_env = {**_BASE_ENV, "HOME": str(self.workspace), **(env or {})}
        pipe = asyncio.subprocess.DEVNULL if detached else asyncio.subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/bash", "-c", command,
                cwd=self.workspace.joinpath(*parts), env=full_env,
                stdin=asyncio.subprocess.DEVNULL, stdout=pipe, stderr=pipe,
                start_new_session=True,
            )  # fmt: skip
            hold(proc)
        except OSError as err:
            raise SandboxUnavailable(f"cannot start command: {err}") from err
        if detached:
            self._detached.add(proc)
            return ExecResult(0, "", "", False, False, command_id=f"cmd_{secrets.token_hex(8)}")
        out, err_ = capture_pair(max_output, on_output)

        async def drain(stream: asyncio.StreamReader | None, sink: HeadTail) -> None:
            while stream is not None and (chunk := await stream.read(1 << 16)):
                sink.feed(chunk)

        drains = asyncio.gather(drain(proc.stdout, out), drain(proc.stderr, err_))
        timed_out = False
        try:
            await asyncio.wait_for(_exited(proc.pid), max(0.001, timeout))
        except TimeoutError:
            timed_out = True
        finally:
            # Kill the whole group, also after a normal exit (background jobs die with the
            # command, as in the local provider).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drains, 5)
        code = proc.returncode if proc.returncode is not None else -1
        stdout, t1 = out.result()
        stderr, t2 = err_.result()
        return ExecResult(128 - code if code < 0 else code, stdout, stderr, t1 or t2, timed_out)

    async def snapshot(self) -> SnapshotInfo:
        snap_id = new_snapshot_id(self.name)
        dest = self.provider._snapshot_root / snap_id

        def copy() -> SnapshotInfo:
            shutil.copytree(self.workspace, dest, symlinks=True)
            digest, size = hashlib.sha256(), 0
            for dirpath, dirnames, filenames in os.walk(dest):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath, name)
                    digest.update(os.fsencode(p.relative_to(dest)))
                    if not p.is_symlink():
                        data = p.read_bytes()
                        digest.update(data)
                        size += len(data)
            url = f"fake://snapshots/{snap_id}"
            self.provider.snapshots[url] = dest
            return SnapshotInfo(url, size, digest.hexdigest(), datetime.now(UTC))

        return await asyncio.to_thread(copy)

    async def restore(self, snapshot_url: str) -> None:
        source = self.provider.snapshots.get(snapshot_url)
        if source is None:
            raise SandboxNotFound(f"no such snapshot: {snapshot_url}")
        await self.stop()

        def swap() -> None:
            staging = self.workspace.with_name(f".{self.name}.restore")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging, symlinks=True)
            shutil.rmtree(self.workspace, ignore_errors=True)
            staging.rename(self.workspace)

        await asyncio.to_thread(swap)

    async def freeze(self) -> None:
        """SIGSTOP each detached command's process group (what ``setsid`` escapes is missed)."""
        groups = {proc.pid for proc in self._detached if proc.returncode is None}
        await asyncio.to_thread(_stop_groups, groups)

    async def stop(self) -> None:
        self._stopped = True
        for proc in list(self._detached):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            self._detached.discard(proc)

    async def destroy(self) -> None:
        await self.stop()
        await asyncio.to_thread(shutil.rmtree, self.workspace, True)

    async def status(self) -> SandboxStatus:
        if not self.workspace.is_dir():
            return "missing"
        return "stopped" if self._stopped else "running"
