"""STAND-IN for Vercel Sandbox: an in-process HTTP transport that emulates its REST API.

**This is not Vercel.** Vercel cannot be reached from CI or a dev box without an account, so the
Vercel provider is tested through the real ``vercel-sandbox`` SDK talking to this transport
(in the spirit of ``httpx.MockTransport``): every request the SDK makes goes through the real
request building, serialisation, response parsing, retry and session-recovery code; only the
server end is emulated. It implements the endpoints the provider uses — create, get/resume,
destroy, session stop, commands (streamed NDJSON, detached, kill, timeout), file read/write —
with the response shapes the SDK validates (``vercel/sandbox/_internal/api_client.py``).

Commands run *for real* under bubblewrap, so ``/workspace`` and ``/tmp`` look as they do in the
VM: each sandbox owns two host directories bound there, the host ``/usr`` and ``/etc`` are
read-only, and every command gets fresh namespaces (no network; orphans die with it). What it
does not emulate: microVM isolation (this is a shared kernel, for tests only), regions,
snapshots, drives, networking policy, ports, users, interactive sessions.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import gzip
import io
import json
import os
import secrets
import shutil
import signal
import tarfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx2

__all__ = [
    "FAKE_BASE_URL",
    "FakeVercelTransport",
    "bwrap_available",
    "fake_vercel_client",
    "fake_vercel_provider",
]

FAKE_BASE_URL = "https://vercel-sandbox.fake.invalid/api"
"""Base URL to give the SDK; ``.invalid`` can never resolve, so nothing leaves the process."""

_PATH = "/usr/local/bin:/usr/bin:/bin"


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _kill_command(process: asyncio.subprocess.Process) -> None:
    """End a command and everything it started, even one caught while bwrap is still setting up.

    Killing only the outer ``bwrap`` is not enough: its child (pid 1 of the command's pid
    namespace) sets its parent-death signal at some point during setup, and one killed before
    that point lived on, reparented, and went on to start the command. So: stop the outer one
    (a stopped process cannot fork), wait until it is stopped, kill its children (killing a pid
    namespace's init ends the whole namespace), then kill it.
    """
    pid = process.pid
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while _state(pid) not in ("T", "Z", "X", None) and time.monotonic() < deadline:
        time.sleep(0.001)
    for child in _children(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc`` (``None`` once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
    return found


def _error(status: int, code: str, message: str) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"code": code, "message": message}})


@dataclass
class _Command:
    id: str
    name: str
    args: list[str]
    cwd: str
    session_id: str
    started_at: int
    process: asyncio.subprocess.Process
    exit_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "args": self.args,
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "startedAt": self.started_at,
        }
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out


@dataclass
class _Sandbox:
    name: str
    project_id: str
    home: Path
    session_id: str
    running: bool = True
    created_at: int = field(default_factory=_now_ms)
    spec: dict[str, Any] = field(default_factory=dict)
    """The creation request body, for tests that check what the SDK sent."""
    commands: dict[str, _Command] = field(default_factory=dict)

    @property
    def mounts(self) -> dict[str, Path]:
        """VM path → host directory (the only parts of the VM filesystem that persist)."""
        return {"/workspace": self.home / "workspace", "/tmp": self.home / "tmp"}  # noqa: S108

    def session(self) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "sourceSandboxName": self.name,
            "projectId": self.project_id,
            "status": "running" if self.running else "stopped",
            "cwd": "/workspace",
            "requestedAt": self.created_at,
            "startedAt": self.created_at,
        }

    def sandbox(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "currentSessionId": self.session_id,
            "status": "running" if self.running else "stopped",
            "persistent": True,
            "projectId": self.project_id,
            "cwd": "/workspace",
            "createdAt": self.created_at,
            "updatedAt": _now_ms(),
        }


class FakeVercelTransport(httpx2.AsyncBaseTransport):
    """Emulates the Vercel Sandbox API for one project (labelled stand-in; see module doc)."""

    def __init__(
        self,
        root: Path,
        *,
        token: str = "fake-token",  # noqa: S107 (the stand-in's own token, not a secret)
        project_id: str = "prj_fake",
    ) -> None:
        self.root = root
        self.token = token
        self.project_id = project_id
        self.sandboxes: dict[str, _Sandbox] = {}
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for tests that check what the SDK sent."""

    # --- plumbing --------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.split("/api/", 1)[-1]
        self.requests.append((request.method, path))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(403, "forbidden", "invalid token")
        body = await request.aread()
        parts = path.strip("/").split("/")
        try:
            return await self._route(request, parts, body)
        except _HttpError as exc:
            return _error(exc.status, exc.code, exc.message)

    async def aclose(self) -> None:
        for box in list(self.sandboxes.values()):
            await self._kill_all(box)

    async def _route(
        self, request: httpx2.Request, parts: list[str], body: bytes
    ) -> httpx2.Response:
        method = request.method
        if parts == ["v3", "sandboxes"] and method == "POST":
            return self._create(json.loads(body))
        if len(parts) == 3 and parts[:2] == ["v2", "sandboxes"] and parts[2] != "sessions":
            name = parts[2]
            if method == "GET":
                return await self._get(name, request.url.params.get("resume") == "true")
            if method == "DELETE":
                return await self._destroy(name)
        if len(parts) >= 5 and parts[:3] == ["v2", "sandboxes", "sessions"]:
            box = self._session(parts[3])
            action = parts[4:]
            if action == ["stop"] and method == "POST":
                await self._kill_all(box)
                box.running = False
                return httpx2.Response(
                    200, json={"session": box.session(), "sandbox": box.sandbox()}
                )
            if not box.running:
                raise _HttpError(410, "sandbox_stopped", "the sandbox session is stopped")
            if action == ["cmd"] and method == "POST":
                return await self._command(box, json.loads(body), request.url.params)
            if len(action) >= 2 and action[0] == "cmd":
                return await self._command_op(box, action[1], action[2:], method, body, request)
            if action == ["fs", "read"] and method == "POST":
                return self._read(box, json.loads(body))
            if action == ["fs", "write"] and method == "POST":
                return self._write(box, body, request.headers.get("x-cwd", "/"))
            if action == ["fs", "mkdir"] and method == "POST":
                spec = json.loads(body)
                self._host_path(box, spec["path"], spec.get("cwd")).mkdir(
                    parents=True, exist_ok=True
                )
                return httpx2.Response(200, json={})
        raise _HttpError(404, "not_found", f"{method} {'/'.join(parts)} is not emulated")

    def _session(self, session_id: str) -> _Sandbox:
        for box in self.sandboxes.values():
            if box.session_id == session_id:
                return box
        raise _HttpError(410, "sandbox_stopped", "no such running session")

    def _box(self, name: str) -> _Sandbox:
        box = self.sandboxes.get(name)
        if box is None:
            raise _HttpError(404, "sandbox_not_found", f"sandbox {name!r} not found")
        return box

    # --- sandboxes -------------------------------------------------------------------------

    def _create(self, spec: Mapping[str, Any]) -> httpx2.Response:
        name = spec.get("name") or f"sbx_{secrets.token_hex(6)}"
        if name in self.sandboxes:
            raise _HttpError(409, "sandbox_exists", f"sandbox {name!r} already exists")
        home = self.root / name
        box = _Sandbox(
            name, spec.get("projectId", self.project_id), home, _new_session(), spec=dict(spec)
        )
        for host in box.mounts.values():
            host.mkdir(parents=True, exist_ok=True)
        self.sandboxes[name] = box
        return httpx2.Response(
            200, json={"sandbox": box.sandbox(), "session": box.session(), "routes": []}
        )

    async def _get(self, name: str, resume: bool) -> httpx2.Response:
        box = self._box(name)
        resumed = False
        if resume and not box.running:
            box.session_id, box.running, resumed = _new_session(), True, True
        return httpx2.Response(
            200,
            json={
                "sandbox": box.sandbox(),
                "session": box.session(),
                "routes": [],
                "resumed": resumed,
            },
        )

    async def _destroy(self, name: str) -> httpx2.Response:
        box = self._box(name)
        await self._kill_all(box)
        box.running = False
        del self.sandboxes[name]
        await asyncio.to_thread(shutil.rmtree, box.home, True)
        return httpx2.Response(200, json={"sandbox": box.sandbox()})

    async def _kill_all(self, box: _Sandbox) -> None:
        for command in box.commands.values():
            if command.exit_code is None:
                _kill_command(command.process)
        for command in box.commands.values():
            await command.done.wait()

    # --- commands --------------------------------------------------------------------------

    async def _command(
        self, box: _Sandbox, spec: Mapping[str, Any], params: Mapping[str, str]
    ) -> httpx2.Response:
        cwd = spec.get("cwd") or "/workspace"
        argv = [spec["command"], *(spec.get("args") or [])]
        env = {"PATH": _PATH, "HOME": "/workspace", "LANG": "C.UTF-8", **(spec.get("env") or {})}
        wait = spec.get("wait") or params.get("wait") == "true"
        proc = await asyncio.create_subprocess_exec(
            *self._bwrap(box, cwd, env),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if wait else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if wait else asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        command = _Command(
            f"cmd_{secrets.token_hex(8)}", argv[0], argv[1:], cwd, box.session_id, _now_ms(), proc
        )
        box.commands[command.id] = command
        timeout_ms = spec.get("timeout")
        asyncio.get_running_loop().create_task(self._reap(command, timeout_ms))
        if not wait:
            return httpx2.Response(200, json={"command": command.payload()})
        return httpx2.Response(
            200,
            headers={"content-type": "application/x-ndjson"},
            stream=_NdjsonStream(self._follow(command)),
        )

    async def _reap(self, command: _Command, timeout_ms: int | None) -> None:
        try:
            if timeout_ms:
                try:
                    await asyncio.wait_for(command.process.wait(), timeout_ms / 1000)
                except TimeoutError:
                    _kill_command(command.process)
            rc = await command.process.wait()
        finally:
            rc = command.process.returncode if command.process.returncode is not None else -9
            command.exit_code = 128 - rc if rc < 0 else rc
            command.done.set()

    async def _follow(self, command: _Command) -> AsyncIterator[dict[str, Any]]:
        yield {"command": command.payload()}
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=64)
        proc = command.process
        assert proc.stdout is not None and proc.stderr is not None

        async def pump(name: str, reader: asyncio.StreamReader) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            while chunk := await reader.read(65536):
                await queue.put((name, decoder.decode(chunk)))
            if tail := decoder.decode(b"", final=True):
                await queue.put((name, tail))

        async def pump_all() -> None:
            await asyncio.gather(pump("stdout", proc.stdout), pump("stderr", proc.stderr))  # type: ignore[arg-type]
            await queue.put(None)

        task = asyncio.get_running_loop().create_task(pump_all())
        try:
            while (item := await queue.get()) is not None:
                if item[1]:
                    yield {"stream": item[0], "data": item[1]}
            await command.done.wait()
            yield {"command": command.payload()}
        finally:
            task.cancel()  # client went away: the process runs on, like a real VM

    async def _command_op(
        self,
        box: _Sandbox,
        command_id: str,
        rest: list[str],
        method: str,
        body: bytes,
        request: httpx2.Request,
    ) -> httpx2.Response:
        command = box.commands.get(command_id)
        if command is None:
            raise _HttpError(404, "command_not_found", f"no command {command_id}")
        if rest == ["kill"] and method == "POST":
            # Emulation: any signal kills the command's whole namespace (bwrap's pid 1).
            if command.exit_code is None:
                _kill_command(command.process)
            await command.done.wait()
            return httpx2.Response(200, json={"command": command.payload()})
        if rest == [] and method == "GET":
            if request.url.params.get("wait") == "true":
                await command.done.wait()
            return httpx2.Response(200, json={"command": command.payload()})
        raise _HttpError(404, "not_found", "command operation not emulated")

    def _bwrap(self, box: _Sandbox, cwd: str, env: Mapping[str, str]) -> list[str]:
        argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
        argv += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for vm_path, host in box.mounts.items():
            argv += ["--bind", str(host), vm_path]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--chdir", cwd, "--"]
        return argv

    # --- files -----------------------------------------------------------------------------

    def _host_path(self, box: _Sandbox, path: str, cwd: str | None = None) -> Path:
        vm_path = os.path.normpath(
            path if path.startswith("/") else f"{cwd or '/workspace'}/{path}"
        )
        for prefix, host in box.mounts.items():
            if vm_path == prefix or vm_path.startswith(prefix + "/"):
                candidate = host / vm_path[len(prefix) :].lstrip("/")
                # Resolve links as the VM would, but never out of the emulated directories.
                real = Path(os.path.realpath(candidate))
                if real != host and host not in real.parents:
                    raise _HttpError(403, "forbidden", "path leaves the emulated filesystem")
                return candidate
        raise _HttpError(403, "forbidden", f"{vm_path} is outside the emulated filesystem")

    def _read(self, box: _Sandbox, spec: Mapping[str, Any]) -> httpx2.Response:
        host = self._host_path(box, spec["path"], spec.get("cwd"))
        if host.is_dir():
            raise _HttpError(400, "is_a_directory", f"{spec['path']} is a directory")
        if not host.is_file():
            raise _HttpError(404, "file_not_found", f"{spec['path']} does not exist")
        return httpx2.Response(200, stream=_FileStream(host))

    def _write(self, box: _Sandbox, body: bytes, cwd: str) -> httpx2.Response:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body)), mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    raise _HttpError(400, "bad_archive", "only regular files are accepted")
                target = self._host_path(
                    box,
                    member.name
                    if member.name.startswith("/")
                    else f"{cwd.rstrip('/')}/{member.name}",
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with open(target, "wb") as f:
                    shutil.copyfileobj(source, f, 1 << 20)
                os.chmod(target, member.mode & 0o7777 if member.mode else 0o644)
        return httpx2.Response(200, json={})


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _new_session() -> str:
    return f"sess_{secrets.token_hex(8)}"


class _NdjsonStream(httpx2.AsyncByteStream):
    def __init__(self, records: AsyncIterator[dict[str, Any]]) -> None:
        self._records = records

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for record in self._records:
            yield (json.dumps(record) + "\n").encode()

    async def aclose(self) -> None:
        await self._records.aclose()  # type: ignore[attr-defined]


class _FileStream(httpx2.AsyncByteStream):
    """A file streamed 1 MiB at a time; closed as soon as the client closes the response."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._file = await asyncio.to_thread(self._path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(self._file.read, 1 << 20):
                yield chunk
        finally:
            self._file.close()

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()


def fake_vercel_client(transport: httpx2.AsyncBaseTransport, *, credentials: bool = True) -> Any:
    """A real :class:`vercel.sandbox.SandboxClient` whose HTTP goes to ``transport``.

    ``credentials=False`` leaves credential resolution to the SDK (``VERCEL_TOKEN``,
    ``VERCEL_TEAM_ID``, ``VERCEL_PROJECT_ID``), to test that path too.
    """
    from vercel.sandbox import SandboxClient, SandboxCredentials, SandboxServiceOptions

    async def fixed_credentials() -> Any:
        return SandboxCredentials(
            token=getattr(transport, "token", "fake-token"),
            team_id="team_fake",
            project_id=getattr(transport, "project_id", "prj_fake"),
        )

    options = SandboxServiceOptions(
        base_url=FAKE_BASE_URL, credentials_factory=fixed_credentials if credentials else None
    )
    return SandboxClient.create(
        options=options, httpx_client_factory=lambda: httpx2.AsyncClient(transport=transport)
    )


@contextlib.asynccontextmanager
async def fake_vercel_provider(root: Path, store: Any | None = None) -> AsyncIterator[Any]:
    """A :class:`~agent_sessions.sandbox.vercel.VercelProvider` on this stand-in, for tests.

    Sandboxes live under ``root``; snapshots go to ``store`` (default: a local store in
    ``root``). Everything the stand-in started is killed on exit.
    """
    from agent_sessions.sandbox.vercel import VercelProvider
    from agent_sessions.settings import Settings
    from agent_sessions.snapshots import LocalSnapshotStore

    transport = FakeVercelTransport(root / "vercel")
    client = fake_vercel_client(transport)
    provider = VercelProvider(
        Settings(data_dir=root),
        store if store is not None else LocalSnapshotStore(root / "snapshots"),
        client=client,
    )
    try:
        yield provider
    finally:
        await transport.aclose()
        await client.aclose()
