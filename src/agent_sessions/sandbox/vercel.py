"""Sandboxes on Vercel Sandbox (Firecracker microVMs), through the official ``vercel-sandbox`` SDK.

For scale-out deployments: no sandbox is tied to one host, and hostile code runs
behind a VM boundary instead of a shared kernel. Each of our sandboxes is a *named persistent*
Vercel sandbox: ``stop()`` ends its session and Vercel keeps the filesystem; the next command
resumes it (the SDK does that on its own).

Credentials are Vercel's own variables, read by the SDK: ``VERCEL_TOKEN`` + ``VERCEL_TEAM_ID`` +
``VERCEL_PROJECT_ID``, or ``VERCEL_OIDC_TOKEN`` on Vercel. They never enter ``state``.

Every SDK call goes through :func:`~agent_sessions.sandbox._vercel_errors.retrying`: failures a
retry can fix are retried (bounded, with backoff) where a second try cannot run anything twice,
a sandbox still stopping or snapshotting is waited for, and everything else comes out as one of
our sandbox errors; no SDK or ``httpx2`` exception leaves this module.

The workspace is ``/workspace`` inside the VM, as with the local provider. Snapshots go through
our :class:`~agent_sessions.snapshots.SnapshotStore` (tar streamed out of the VM, verified,
hashed), so a session's snapshot outlives the VM and Vercel's snapshot expiry and restores into
any provider.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from vercel.errors import VercelError
from vercel.sandbox import SandboxClient, SandboxServiceOptions

from agent_sessions.sandbox._openat2 import split_relative
from agent_sessions.sandbox._vercel_errors import Missing, RetryPolicy, retrying
from agent_sessions.sandbox._vercel_files import (
    parse_find_output,
    tar_directory,
    untar_into,
)
from agent_sessions.sandbox._vercel_output import CappedText
from agent_sessions.sandbox.base import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_READ,
    DEFAULT_TIMEOUT,
    READ_CHUNK,
    ExecResult,
    FileInfo,
    OutputListener,
    Sandbox,
    SandboxProvider,
    SandboxStatus,
    SnapshotInfo,
    check_range,
    validate_name,
)
from agent_sessions.sandbox.errors import (
    FileTooLarge,
    PathConflict,
    PathNotFound,
    SandboxError,
    SandboxNotFound,
    SandboxUnavailable,
    UnsafePath,
)
from agent_sessions.settings import Settings
from agent_sessions.snapshots import SnapshotStore, store_from_settings
from agent_sessions.snapshots.base import new_snapshot_id

__all__ = [
    "PLAN_SESSION_LIMITS",
    "WORKSPACE",
    "RetryPolicy",
    "VercelProvider",
    "VercelSandbox",
    "credentials_problem",
]

T = TypeVar("T")

WORKSPACE = "/workspace"
"""Where the workspace lives inside the VM."""
TIMEOUT_EXIT_CODE = 124
"""Exit code reported for a command killed at its timeout (as GNU ``timeout`` does)."""
_BACKSTOP = 5.0
"""Seconds past our own timeout after which Vercel kills the command itself."""
_INTERNAL_OUTPUT = 64 << 20
PLAN_SESSION_LIMITS = {
    "hobby": timedelta(minutes=45),
    "pro": timedelta(hours=24),
    "enterprise": timedelta(hours=24),
}
"""The longest session each Vercel plan allows (docs/vercel-provider.md cites the pages)."""
_TRANSITIONAL = ("stopping", "snapshotting")
_LIVE = ("running", "pending")
_MISSING = 44  # exit code of our helper scripts for "no such path"
_STAT = r"""
p="$1"; shift
[ -e "$p" ] || [ -L "$p" ] || exit 44
find "$p" "$@" -printf '%y %s %m %T@ %P\0'
"""
_READ_WINDOW = """
[ -f "$1" ] && [ ! -L "$1" ] || exit 44
tail -c "+$2" -- "$1" | head -c "$3" | base64 -w0
"""
_WINDOW = 4 << 20
"""Bytes one ranged read from an offset brings out of the VM (as base64 command output)."""
# Paths inside the VM (its private /tmp), not on this host.
_SNAPSHOT_TAR = "/tmp/.agent-sessions-snapshot.tar"  # noqa: S108
_RESTORE_TAR = "/tmp/.agent-sessions-restore.tar"  # noqa: S108
_RESTORE = r"""
set -e
find /workspace -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
tar -xpf "$1" -C /workspace
rm -f -- "$1"
"""
_PREPARE = f"""
set -e
if [ ! -d {WORKSPACE} ]; then
  if [ -w / ]; then mkdir -p {WORKSPACE}
  else sudo mkdir -p {WORKSPACE} && sudo chown "$(id -u):$(id -g)" {WORKSPACE}; fi
fi
"""


def _remote(parts: list[str]) -> str:
    return "/".join([WORKSPACE, *parts]) if parts else WORKSPACE


class VercelSandbox(Sandbox):
    """One named, persistent Vercel sandbox."""

    def __init__(self, name: str, handle: Any, provider: VercelProvider) -> None:
        self.name = name
        self._handle = handle
        self._provider = provider
        self._client = provider._client
        self._store = provider._store
        self._policy = provider.retry_policy
        self._destroyed = False

    @property
    def state(self) -> dict[str, Any]:
        return {"type": "vercel", "sandboxName": self.name}

    async def _retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        missing: Missing = "path",
        ran: Callable[[], bool] | None = None,
    ) -> T:
        return await retrying(
            call,
            what=what,
            name=self.name,
            policy=self._policy,
            idempotent=idempotent,
            missing="sandbox" if self._destroyed else missing,
            wait_stopped=self._wait_stopped,
            ran=ran,
        )

    async def _wait_stopped(self, deadline: float) -> None:
        """Wait until the sandbox is no longer stopping or snapshotting (Vercel saves a
        persistent sandbox's filesystem as it stops; it cannot resume before that is done)."""
        await self._provider.wait_stopped(self.name, deadline)

    # --- commands --------------------------------------------------------------------------

    async def exec(
        self,
        command: str,
        *,
        cwd: str = ".",
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the command is killed in the VM)
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
        on_output: OutputListener | None = None,
    ) -> ExecResult:
        parts = split_relative(cwd)
        if parts and not await self._is_dir(parts):
            raise PathNotFound(f"no such directory in the workspace: {cwd!r}")
        environment = {"LANG": "C.UTF-8", **(env or {})}
        if detached:
            process = await self._retrying(
                "starting a command",
                lambda: self._handle.create_process(
                    "bash", ["-c", command], cwd=_remote(parts), env=environment
                ),
                idempotent=False,
                missing="command",
            )
            return ExecResult(0, "", "", False, False, command_id=str(process.id))
        return await self._run(
            command,
            cwd=_remote(parts),
            env=environment,
            timeout=timeout,
            max_output=max_output,
            idempotent=False,
            on_output=on_output,
        )

    async def _run(
        self,
        command: str,
        *,
        cwd: str,
        env: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 (the command is killed in the VM)
        max_output: int,
        args: list[str] | None = None,
        idempotent: bool = True,
        on_output: OutputListener | None = None,
    ) -> ExecResult:
        """Run a command to its end. A command of the agent's (not ``idempotent``) is sent
        again only when Vercel refused it before it started; our own read-only scripts also
        when the answer was lost."""
        started: list[Any] = []
        sinks: list[tuple[CappedText, CappedText]] = []

        async def attempt() -> Any:
            stdout, stderr = CappedText.pair(max_output, on_output)
            sinks.append((stdout, stderr))  # fresh sinks: a retry must not repeat output
            return await self._handle.run_process(
                "bash",
                ["-c", command, "bash", *(args or [])],
                cwd=cwd,
                env=dict(env),
                kill_after=timeout + _BACKSTOP,
                stdout=stdout,
                stderr=stderr,
                on_start=started.append,
            )

        run = self._retrying(
            "running a command",
            attempt,
            idempotent=idempotent,
            missing="command",
            ran=lambda: bool(started),
        )
        try:
            done = await asyncio.wait_for(run, timeout)
        except TimeoutError:
            # The wait was cancelled; the command may still run in the VM. Kill it.
            if started:  # if it already ended, Vercel's own kill_after was the backstop anyway
                with contextlib.suppress(VercelError, httpx2.HTTPError):
                    await started[-1].kill()
            out, out_cut = sinks[-1][0].result() if sinks else ("", False)
            err, err_cut = sinks[-1][1].result() if sinks else ("", False)
            return ExecResult(TIMEOUT_EXIT_CODE, out, err, out_cut or err_cut, True)
        out, out_cut = sinks[-1][0].result()
        err, err_cut = sinks[-1][1].result()
        return ExecResult(int(done.returncode), out, err, out_cut or err_cut, False)

    async def _script(
        self,
        script: str,
        *args: str,
        timeout: float = 300.0,  # noqa: ASYNC109 (the command is killed in the VM)
        idempotent: bool = True,
    ) -> ExecResult:
        return await self._run(
            script,
            cwd=WORKSPACE,
            env={"LANG": "C.UTF-8"},
            timeout=timeout,
            max_output=_INTERNAL_OUTPUT,
            args=list(args),
            idempotent=idempotent,
        )

    async def _is_dir(self, parts: list[str]) -> bool:
        result = await self._script('[ -d "$1" ] && [ ! -L "$1" ]', _remote(parts))
        return result.exit_code == 0

    # --- files -----------------------------------------------------------------------------

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_READ) -> bytes:
        info = await self._regular_file(path)
        if info.size > max_bytes:
            raise FileTooLarge(path, max_bytes, info.size)
        data = bytearray()
        async with contextlib.aclosing(self._stream(info.path, 0, max_bytes + 1)) as chunks:
            async for chunk in chunks:
                data += chunk
                if len(data) > max_bytes:
                    raise FileTooLarge(path, max_bytes)
        return bytes(data)

    async def read_stream(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        check_range(offset, length)
        info = await self._regular_file(path)
        async with contextlib.aclosing(self._stream(info.path, offset, length)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _regular_file(self, path: str) -> FileInfo:
        """Stat ``path`` and refuse anything but a regular file (a FIFO would hang the read; a
        link is refused as the host providers refuse it). The provider never asks Vercel to
        read a directory: what Vercel answers then is documented nowhere."""
        info = await self.stat(path)
        if info.kind == "symlink":
            raise UnsafePath(f"path crosses a symlink: {path!r}")
        if info.kind != "file":
            raise PathConflict(f"not a regular file: {path!r}")
        return info

    async def _stream(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        """From the start, the SDK's streamed download; from an offset (the SDK cannot seek),
        windows cut in the VM by ``tail -c | head -c`` and sent base64-encoded.

        A download that breaks after its first bytes goes on from where it broke, in windows.
        """
        remote_path = _remote(split_relative(path))
        left = length
        if offset == 0:
            remote = await self._retrying("opening a file", lambda: self._open_read(remote_path))
            try:
                while left is None or left > 0:
                    want = READ_CHUNK if left is None else min(READ_CHUNK, left)
                    try:
                        chunk = await remote.read(want)
                    except (VercelError, httpx2.HTTPError, httpx2.StreamError):
                        break  # resumed below, from this offset
                    if not chunk:
                        return
                    offset += len(chunk)
                    if left is not None:
                        left -= len(chunk)
                    yield chunk
                else:
                    return
            finally:
                with contextlib.suppress(VercelError, httpx2.HTTPError, httpx2.StreamError):
                    await remote.close()
        while left is None or left > 0:
            want = _WINDOW if left is None else min(_WINDOW, left)
            result = await self._run(
                _READ_WINDOW, cwd=WORKSPACE, env={"LANG": "C.UTF-8"}, timeout=300.0,
                max_output=want * 4 // 3 + 16, args=[remote_path, str(offset + 1), str(want)],
            )  # fmt: skip
            if result.exit_code == _MISSING:
                raise PathNotFound(f"no such file in the workspace: {path!r}")
            if result.exit_code != 0 or result.truncated:
                raise SandboxUnavailable(
                    f"read failed in the Vercel sandbox: {result.stderr[:200]}"
                )
            window = base64.b64decode(result.stdout)
            for start in range(0, len(window), READ_CHUNK):
                yield window[start : start + READ_CHUNK]
            if len(window) < want:
                return
            offset += len(window)
            if left is not None:
                left -= len(window)

    async def _open_read(self, remote_path: str) -> _Closing:
        """An SDK reader, its request open (so a refused request fails here, retried)."""
        return _Closing(await self._handle.fs.open(remote_path, "rb").__aenter__())

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        parts = split_relative(path)
        if not parts:
            raise PathConflict("cannot write the workspace root")
        await self._retrying(
            "writing a file",
            lambda: self._handle.fs.write_bytes(_remote(parts), data, mode=mode),
        )

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        parts = split_relative(path)
        info = await self.stat(path)
        if info.kind != "dir":
            raise PathConflict(f"not a directory: {path!r}")
        result = await self._script(_STAT, _remote(parts), "-mindepth", "1", "-maxdepth", "1")
        prefix = "/".join(parts)
        return sorted(parse_find_output(result.stdout, prefix), key=lambda i: i.path)

    async def stat(self, path: str) -> FileInfo:
        parts = split_relative(path)
        info = await self._stat_or_none(parts)
        if info is None:
            raise PathNotFound(f"no such path in the workspace: {path!r}")
        return info

    async def _stat_or_none(self, parts: list[str]) -> FileInfo | None:
        result = await self._script(_STAT, _remote(parts), "-maxdepth", "0")
        if result.exit_code == _MISSING:
            return None
        if result.exit_code != 0:
            raise SandboxUnavailable(f"stat failed in the Vercel sandbox: {result.stderr[:200]}")
        entries = parse_find_output(result.stdout, "")
        if len(entries) != 1:
            raise SandboxUnavailable("unexpected stat output from the Vercel sandbox")
        return FileInfo("/".join(parts) or ".", *_tail(entries[0]))

    async def remove(self, path: str) -> None:
        parts = split_relative(path)
        if not parts:
            raise UnsafePath("refusing to remove the workspace root")
        result = await self._script(
            '[ -e "$1" ] || [ -L "$1" ] || exit 44; rm -rf -- "$1"',
            _remote(parts),
            idempotent=False,  # a lost answer, sent again, would say "no such path"
        )
        if result.exit_code == _MISSING:
            raise PathNotFound(f"no such path in the workspace: {path!r}")
        if result.exit_code != 0:
            raise SandboxUnavailable(f"remove failed in the Vercel sandbox: {result.stderr[:200]}")

    # --- snapshots -------------------------------------------------------------------------

    async def snapshot(self) -> SnapshotInfo:
        """Tar the workspace inside the VM, stream it out, and save it through the store."""
        made = await self._script(
            f"tar --numeric-owner -C {WORKSPACE} -cf {_SNAPSHOT_TAR} .", timeout=3600
        )
        if made.exit_code != 0:
            raise SandboxUnavailable(f"snapshot failed in the Vercel sandbox: {made.stderr[:300]}")
        staging = Path(tempfile.mkdtemp(prefix="vercel-snapshot-"))
        try:
            tar_path = staging / "workspace.tar"
            await self._retrying("downloading the snapshot", lambda: self._download(tar_path))
            tree = staging / "workspace"
            tree.mkdir()
            await asyncio.to_thread(untar_into, tar_path, tree)
            tar_path.unlink()
            snapshot_id = new_snapshot_id(self.name)
            return await self._store.save(tree, snapshot_id)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            with contextlib.suppress(SandboxError):
                await self._script(f"rm -f {_SNAPSHOT_TAR}")

    async def _download(self, tar_path: Path) -> None:
        """The tar made in the VM, to ``tar_path`` (whole again on every try)."""
        local = await asyncio.to_thread(tar_path.open, "wb")
        try:
            async with self._handle.fs.open(_SNAPSHOT_TAR, "rb") as remote:
                while chunk := await remote.read(1 << 20):
                    await asyncio.to_thread(local.write, chunk)
        finally:
            local.close()

    async def restore(self, snapshot_url: str) -> None:
        """Restore through the store on this host (verified), then replace the VM's workspace."""
        staging = Path(tempfile.mkdtemp(prefix="vercel-restore-"))
        try:
            tree = staging / "workspace"
            await self._store.restore(snapshot_url, tree)
            tar_path = staging / "workspace.tar"
            await asyncio.to_thread(tar_directory, tree, tar_path)
            await self._retrying("uploading the snapshot", lambda: self._upload(tar_path))
            # Not sent again on a lost answer: it deletes the tar it unpacks.
            result = await self._script(_RESTORE, _RESTORE_TAR, timeout=3600, idempotent=False)
            if result.exit_code != 0:
                raise SandboxUnavailable(
                    f"restore failed in the Vercel sandbox: {result.stderr[:300]}"
                )
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _upload(self, tar_path: Path) -> None:
        """``tar_path`` to the VM's ``/tmp`` (replaced whole on every try)."""
        size = await asyncio.to_thread(os.path.getsize, tar_path)
        local = await asyncio.to_thread(tar_path.open, "rb")
        try:
            async with self._handle.fs.open(_RESTORE_TAR, "wb", size=size) as remote:
                while chunk := await asyncio.to_thread(local.read, 1 << 20):
                    await remote.write(chunk)
        finally:
            local.close()

    # --- lifecycle -------------------------------------------------------------------------

    async def freeze(self) -> None:
        """Nothing: Vercel has no way to pause a VM's processes while our ``tar`` runs in it.

        A process that changes the workspace under the snapshot makes ``tar`` fail; the
        lifecycle then calls :meth:`stop` (Vercel keeps the filesystem) and snapshots again,
        in a fresh VM session where nothing else runs.
        """

    async def stop(self) -> None:
        """Stop the current session. Vercel then goes on stopping it (``stopping``, then
        ``snapshotting`` while it saves the filesystem); the next call that needs the sandbox
        waits for that to end and resumes it."""
        # A fresh handle: another process may have resumed the sandbox into a new session.
        try:
            fresh = await self._provider.lookup(self.name)
        except SandboxNotFound:
            return
        self._handle = fresh
        if _status(fresh) in _LIVE:
            await self._retrying("stopping the sandbox", fresh.stop, missing="sandbox")

    async def destroy(self) -> None:
        with contextlib.suppress(SandboxNotFound):  # already gone: destroyed all the same
            await self._retrying("destroying the sandbox", self._handle.destroy, missing="sandbox")
        self._destroyed = True

    async def status(self) -> SandboxStatus:
        try:
            fresh = await self._provider.lookup(self.name)
        except SandboxNotFound:
            return "missing"
        return "running" if _status(fresh) in _LIVE else "stopped"


class _Closing:
    """An opened SDK reader whose ``close`` ends the request it streams from."""

    def __init__(self, remote: Any) -> None:
        self._remote = remote

    async def read(self, size: int) -> bytes:
        return await self._remote.read(size)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._remote.__aexit__(None, None, None)


def _status(handle: Any) -> str:
    return str(getattr(handle, "status", "") or "")


def _tail(info: FileInfo) -> tuple[Any, ...]:
    return (info.kind, info.size, info.mode, info.mtime)


def credentials_problem() -> str | None:
    """Why the SDK could not resolve credentials here, or None when it can.

    Uses the SDK's own resolution (``vercel.oidc.credentials``): a token, the team id and the
    project id from ``VERCEL_TOKEN``/``VERCEL_TEAM_ID``/``VERCEL_PROJECT_ID``, or an OIDC token
    whose claims (or those variables) name the team and project. No I/O, no secret returned.
    """
    from vercel.oidc.credentials import get_credentials

    try:
        get_credentials()
    except Exception as error:  # the SDK raises RuntimeError and its token errors
        return str(error).splitlines()[0][:200] or type(error).__name__
    return None


class VercelProvider(SandboxProvider):
    """Named persistent Vercel sandboxes; snapshots in the configured snapshot store."""

    kind = "vercel"

    def __init__(
        self,
        settings: Settings,
        store: SnapshotStore | None = None,
        *,
        client: Any | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self._store = store if store is not None else store_from_settings(settings)
        self.retry_policy = retry_policy or RetryPolicy()
        # Vercel stops a session at its execution limit (default 5 minutes); a persistent
        # sandbox keeps its files and resumes on demand, but detached commands (a dev server)
        # would die early. Ask for the session's hard timeout, within what the plan allows.
        self.plan = settings.vercel_plan
        plan_limit = PLAN_SESSION_LIMITS[self.plan]
        self._session_limit = min(timedelta(seconds=settings.hard_timeout_seconds), plan_limit)
        # Constructing the client does no I/O; credentials are resolved per request.
        if client is None:
            url = settings.vercel_api_url
            client = SandboxClient.create(
                options=SandboxServiceOptions(base_url=url) if url else None
            )
        self._client = client

    async def lookup(self, name: str) -> Any:
        """A fresh handle on sandbox ``name`` (without resuming it); SandboxNotFound if none."""
        return await retrying(
            lambda: self._client.get_sandbox(name=name),
            what="looking the sandbox up",
            name=name,
            policy=self.retry_policy,
            idempotent=True,
            missing="sandbox",
        )

    async def wait_stopped(self, name: str, deadline: float) -> None:
        """Poll until sandbox ``name`` is past ``stopping``/``snapshotting`` (or gone);
        SandboxUnavailable, saying which state it is stuck in, after ``deadline``."""
        while True:
            state = _status(await self.lookup(name))
            if state not in _TRANSITIONAL:
                return
            if time.monotonic() >= deadline:
                waited = self.retry_policy.transition_timeout
                raise SandboxUnavailable(
                    f"Vercel sandbox {name!r} is still {state} after {waited:g} s; try again later"
                )
            await asyncio.sleep(self.retry_policy.poll_interval)

    async def create(self, name: str) -> VercelSandbox:
        validate_name(name)

        async def get_or_create() -> Any:
            handle, _created = await self._client.get_or_create_sandbox(
                name=name,
                persistent=True,
                resume=True,
                execution_time_limit=self._session_limit,
            )
            return handle

        handle = await retrying(
            get_or_create,
            what="creating the sandbox",
            name=name,
            policy=self.retry_policy,
            idempotent=True,
            missing="sandbox",
            wait_stopped=lambda deadline: self.wait_stopped(name, deadline),
            # 409: another process created it between our lookup and our create
            also_retry=lambda error: getattr(error, "status_code", None) == 409,
        )
        box = VercelSandbox(name, handle, self)
        prepared = await box._script(_PREPARE)
        if prepared.exit_code != 0:
            raise SandboxUnavailable(f"could not prepare {WORKSPACE}: {prepared.stderr[:300]}")
        return box

    async def connect(self, state: Mapping[str, Any]) -> VercelSandbox:
        name = state.get("sandboxName") if state.get("type") == "vercel" else None
        if not isinstance(name, str):
            raise SandboxNotFound("not a Vercel sandbox state")
        validate_name(name)
        return VercelSandbox(name, await self.lookup(name), self)

    def capabilities(self) -> dict[str, Any]:
        problem = credentials_problem()
        out: dict[str, Any] = {
            "kind": self.kind,
            "isolation": "Firecracker microVM per sandbox (Vercel)",
            "network": "Vercel default egress policy",
            "credentials": "VERCEL_TOKEN/VERCEL_TEAM_ID/VERCEL_PROJECT_ID or VERCEL_OIDC_TOKEN",
            "credentialsPresent": problem is None,
            "plan": self.plan,
            "sessionLimitSeconds": int(self._session_limit.total_seconds()),
        }
        if problem is not None:
            out["credentialsProblem"] = problem
        return out

    async def aclose(self) -> None:
        await self._client.aclose()
