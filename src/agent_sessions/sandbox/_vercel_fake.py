"""STAND-IN for Vercel Sandbox: a local HTTP server that emulates its REST API.

**This is not Vercel.** Vercel cannot be reached from CI or a dev box without an account, so the
Vercel provider is tested through the real ``vercel-sandbox`` SDK talking, over real HTTP on
127.0.0.1, to this server: every request goes through the SDK's real request building,
serialisation, response parsing, session resume and stream recovery; only the server end is
emulated. What it answers follows two of Vercel's own sources (docs/vercel-provider.md lists
what is checked against which, and what is not):

* the official Python SDK (``vercel-sandbox`` 0.10, ``vercel/sandbox/_internal``): the
  response shapes it validates, the error codes it acts on (``sandbox_stopped``,
  ``sandbox_stopping``, ``sandbox_snapshotting``, ``sandbox_stream_closed``), NDJSON command
  streams and the ``cmd/{id}/logs`` replay it recovers a broken stream from;
* Vercel's mock server (``packages/vercel-sandbox-mock`` in ``github.com/vercel/sandbox``):
  ``{"error": {"code", "message"}}`` bodies, 404 ``not_found`` for an unknown sandbox, session
  or command, 410 ``sandbox_stopped`` for a stopped session, a bare 404 for a missing file,
  ``application/json`` / ``application/x-ndjson`` / ``application/octet-stream``.

Beyond Vercel's mock, which answers everything at once, it has the states a real persistent
sandbox passes through when it stops (``stopping``, then ``snapshotting`` while Vercel saves its
filesystem, then ``stopped``), each lasting a while; session calls meanwhile answer 422 with
the state's code, as the SDKs expect. Failures are injected on demand through a control API
(Python: :meth:`FakeVercelApi.inject`, :meth:`FakeVercelApi.hold`; HTTP: ``/_fake/…``): an
error status (429 with ``Retry-After``, 5xx), a connection dropped mid-response, a request
that hangs past the client's timeout.

Commands run *for real* under bubblewrap, so ``/workspace`` and ``/tmp`` look as they do in the
VM: each sandbox owns two host directories bound there, the host ``/usr`` and ``/etc`` are
read-only, and every command gets fresh namespaces (no network; orphans die with it). What it
does not emulate: microVM isolation (this is a shared kernel, for tests only), regions, Vercel's
own snapshots and drives, network policy, ports, users, stdin, interactive sessions.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import gzip
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

__all__ = [
    "FakeVercelApi",
    "FakeVercelThread",
    "Fault",
    "bwrap_available",
    "fake_vercel",
    "fake_vercel_client",
    "fake_vercel_provider",
]

_PATH = "/usr/local/bin:/usr/bin:/bin"
_Send = Callable[[dict[str, Any]], Awaitable[None]]
_Receive = Callable[[], Awaitable[dict[str, Any]]]
_TRANSITIONAL = {"stopping": "sandbox_stopping", "snapshotting": "sandbox_snapshotting"}


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


# --- responses ------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None


def _json(payload: Any, status: int = 200) -> _Response:
    return _Response(status, json.dumps(payload).encode())


class _HttpError(Exception):
    """An API error as Vercel's mock writes it: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> _Response:
        return _json({"error": {"code": self.code, "message": self.message}}, self.status)


class _Dropped(Exception):
    """Raised inside a response that has started: the server closes the connection."""


@dataclass
class Fault:
    """One failure to inject. It hits the next ``times`` requests (``None``: every one) whose
    method is ``method`` (any when ``None``) and whose path after ``/api/`` matches ``path``
    (a regular expression, searched)."""

    kind: Literal["status", "drop", "hang"]
    path: str = ""
    method: str | None = None
    status: int = 503
    """For ``status``: the HTTP status answered."""
    code: str = "internal_server_error"
    retry_after: float | None = None
    """For ``status``: the ``Retry-After`` header (seconds), if any."""
    seconds: float = 30.0
    """For ``hang``: how long the request waits before it is handled."""
    after_records: int = 0
    """For ``drop`` of an NDJSON stream: records sent before the connection drops."""
    times: int | None = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path, path) is not None


# --- sandboxes and commands -----------------------------------------------------------------


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
    log: list[dict[str, Any]] = field(default_factory=list)
    """Every output record so far; ``cmd/{id}/logs`` replays them from the start."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "args": self.args,
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "startedAt": self.started_at,
            "exitCode": self.exit_code,
        }
        return out

    def append(self, record: dict[str, Any]) -> None:
        self.log.append(record)
        self.changed.set()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """The output records from the first, then each new one until the command ends."""
        sent = 0
        while True:
            self.changed.clear()
            while sent < len(self.log):
                sent += 1
                yield self.log[sent - 1]
            if self.done.is_set() and sent == len(self.log):
                return
            await self.changed.wait()


@dataclass
class _Sandbox:
    name: str
    project_id: str
    home: Path
    session_id: str
    status: str = "running"
    """``running``, ``stopping``, ``snapshotting`` or ``stopped`` (its current session's)."""
    timeout_ms: int = 300_000
    created_at: int = field(default_factory=_now_ms)
    spec: dict[str, Any] = field(default_factory=dict)
    """The creation request body, for tests that check what the SDK sent."""
    commands: dict[str, _Command] = field(default_factory=dict)
    sessions: list[str] = field(default_factory=list)
    transition: asyncio.Task[None] | None = None

    @property
    def mounts(self) -> dict[str, Path]:
        """VM path → host directory (the only parts of the VM filesystem that persist)."""
        return {"/workspace": self.home / "workspace", "/tmp": self.home / "tmp"}  # noqa: S108

    def session(self) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "sourceSandboxName": self.name,
            "projectId": self.project_id,
            "status": self.status,
            "cwd": "/workspace",  # Vercel's is /vercel/sandbox; ours is what exists here
            "region": "iad1",
            "memory": 2048,
            "vcpus": 1,
            "timeout": self.timeout_ms,
            "requestedAt": self.created_at,
            "startedAt": self.created_at,
        }

    def sandbox(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "currentSessionId": self.session_id,
            "status": self.status,
            "persistent": bool(self.spec.get("persistent", False)),
            "projectId": self.project_id,
            "region": "iad1",
            "cwd": "/workspace",  # Vercel's is /vercel/sandbox; ours is what exists here
            "timeout": self.timeout_ms,
            "createdAt": self.created_at,
            "updatedAt": _now_ms(),
            "statusUpdatedAt": _now_ms(),
        }


class FakeVercelApi:
    """An ASGI application emulating the Vercel Sandbox API for one team and project
    (a labelled stand-in; see the module doc). Serve it with :func:`fake_vercel`."""

    def __init__(
        self,
        root: Path,
        *,
        token: str = "fake-token",  # noqa: S107 (the stand-in's own token, not a secret)
        team_id: str = "team_fake",
        project_id: str = "prj_fake",
        stopping_seconds: float = 0.05,
        snapshotting_seconds: float = 0.05,
    ) -> None:
        self.root = root
        self.token, self.team_id, self.project_id = token, team_id, project_id
        self.stopping_seconds = stopping_seconds
        self.snapshotting_seconds = snapshotting_seconds
        self.base_url = ""
        """``http://127.0.0.1:<port>/api`` once served."""
        self.sandboxes: dict[str, _Sandbox] = {}
        self.requests: list[tuple[str, str]] = []
        """(method, path after ``/api/``) of every API request, control API excluded."""
        self.faults: list[Fault] = []
        self._held: str | None = None
        self._release = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- control API ------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Make the next matching requests fail (see :class:`Fault`)."""
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def hold(self, state: Literal["stopping", "snapshotting"] | None) -> None:
        """Keep every stopping sandbox in ``state`` once it reaches it, until ``hold(None)``."""
        self._held = state
        if state is None:
            self._release.set()
        else:
            self._release.clear()

    async def aclose(self) -> None:
        self._closing.set()
        self._release.set()
        for box in list(self.sandboxes.values()):
            await self._kill_all(box)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _control(self, method: str, parts: list[str], body: bytes) -> _Response:
        if parts == ["faults"] and method == "POST":
            spec = json.loads(body)
            spec.pop("hits", None)
            self.inject(Fault(**spec))
            return _json({"faults": len(self.faults)})
        if parts == ["faults"] and method == "DELETE":
            self.clear_faults()
            return _json({"faults": 0})
        if parts == ["hold"] and method == "POST":
            self.hold(json.loads(body).get("state"))
            return _json({"held": self._held})
        if parts == ["requests"] and method == "GET":
            return _json({"requests": [list(r) for r in self.requests]})
        raise _HttpError(404, "not_found", "no such control route")

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        params = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path.startswith("/_fake/"):
            try:
                response = await self._control(method, path[7:].strip("/").split("/"), bytes(body))
            except _HttpError as err:
                response = err.response()
            await self._send(receive, send, response)
            return
        api_path = path.split("/api/", 1)[-1]
        self.requests.append((method, api_path))
        fault = next((f for f in self.faults if f.matches(method, api_path)), None)
        if fault is not None:
            fault.hits += 1
            if fault.kind == "status":
                injected = _HttpError(fault.status, fault.code, f"injected {fault.status}")
                response = injected.response()
                if fault.retry_after is not None:
                    response.headers["retry-after"] = f"{fault.retry_after:g}"
                await self._send(receive, send, response)
                return
            if fault.kind == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), fault.seconds)
        try:
            self._authorize(headers, params)
            response = await self._route(method, api_path, params, headers, bytes(body))
        except _HttpError as err:
            response = err.response()
        if fault is not None and fault.kind == "drop":
            response.stream = _dropping(response.body, response.stream, fault.after_records)
        await self._send(receive, send, response)

    async def _send(self, receive: _Receive, send: _Send, response: _Response) -> None:
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        if response.content_type is not None:
            headers.append((b"content-type", response.content_type.encode()))
        if response.stream is None:
            headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if response.stream is None:
            await send({"type": "http.response.body", "body": response.body})
            return
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            async for chunk in response.stream:
                if gone.done():
                    return  # the client went away: stop reading the file or following
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            gone.cancel()
            with contextlib.suppress(Exception):
                await response.stream.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b""})

    def _authorize(self, headers: Mapping[str, str], params: Mapping[str, str]) -> None:
        """No token: 401; a wrong token, or no or another team: 403."""
        auth = headers.get("authorization")
        if not auth:
            raise _HttpError(401, "unauthorized", "missing authorization")
        if auth != f"Bearer {self.token}" or params.get("teamId") != self.team_id:
            raise _HttpError(403, "forbidden", "Not authorized")

    async def _route(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["v3", "sandboxes"] and method == "POST":
            return await self._create(json.loads(body))
        if parts[:3] == ["v2", "sandboxes", "sessions"] and len(parts) >= 4:
            return await self._session_route(method, parts[3], parts[4:], params, headers, body)
        if len(parts) == 3 and parts[:2] == ["v2", "sandboxes"]:
            if method == "GET":
                return await self._get(parts[2], params.get("resume") == "true")
            if method == "DELETE":
                return await self._destroy(parts[2])
        raise _HttpError(404, "not_found", f"No route for {method} /{path}")

    def _box(self, name: str) -> _Sandbox:
        box = self.sandboxes.get(name)
        if box is None:
            raise _HttpError(404, "not_found", f"Sandbox not found: {name}")
        return box

    # --- sandboxes --------------------------------------------------------------------------

    async def _create(self, spec: Mapping[str, Any]) -> _Response:
        name = spec.get("name") or f"sandbox-{secrets.token_hex(6)}"
        if name in self.sandboxes:
            raise _HttpError(409, "sandbox_exists", f"Sandbox already exists: {name}")
        box = _Sandbox(
            name,
            spec.get("projectId", self.project_id),
            self.root / name,
            _new_session(),
            timeout_ms=int(spec.get("timeout") or 300_000),
            spec=dict(spec),
        )
        box.sessions.append(box.session_id)
        for host in box.mounts.values():
            host.mkdir(parents=True, exist_ok=True)
        self.sandboxes[name] = box
        return _json({"sandbox": box.sandbox(), "session": box.session(), "routes": []})

    async def _get(self, name: str, resume: bool) -> _Response:
        box = self._box(name)
        resumed = False
        if resume and box.status in _TRANSITIONAL:
            # What the SDK expects when it resumes a session still on its way down (it
            # classifies these codes as lifecycle states, ``recovery.py``); not seen live.
            raise _HttpError(422, _TRANSITIONAL[box.status], f"Sandbox is {box.status}")
        if resume and box.status == "stopped":
            box.session_id, box.status, resumed = _new_session(), "running", True
            box.sessions.append(box.session_id)
        payload = {"sandbox": box.sandbox(), "session": box.session(), "routes": []}
        return _json({**payload, "resumed": resumed})

    async def _destroy(self, name: str) -> _Response:
        box = self._box(name)
        await self._kill_all(box)
        if box.transition is not None:
            box.transition.cancel()
        box.status = "stopped"
        del self.sandboxes[name]
        await asyncio.to_thread(shutil.rmtree, box.home, True)
        return _json({"sandbox": box.sandbox()})

    async def _stop(self, box: _Sandbox) -> None:
        """Begin stopping: ``stopping`` → (persistent) ``snapshotting`` → ``stopped``."""
        if box.status != "running":
            return
        box.status = "stopping"
        await self._kill_all(box)
        box.transition = self._spawn(self._transition(box))

    async def _transition(self, box: _Sandbox) -> None:
        await self._stay(box, "stopping", self.stopping_seconds)
        if box.spec.get("persistent"):
            box.status = "snapshotting"
            await self._stay(box, "snapshotting", self.snapshotting_seconds)
        box.status = "stopped"
        box.commands.clear()

    async def _stay(self, box: _Sandbox, state: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        while self._held == state and not self._closing.is_set():
            await self._release.wait()

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _kill_all(self, box: _Sandbox) -> None:
        for command in box.commands.values():
            if command.exit_code is None:
                _kill_command(command.process)
        for command in box.commands.values():
            await command.done.wait()

    # --- sessions ---------------------------------------------------------------------------

    async def _session_route(
        self,
        method: str,
        session_id: str,
        action: list[str],
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        box = next((b for b in self.sandboxes.values() if session_id in b.sessions), None)
        if box is None:
            raise _HttpError(404, "not_found", f"Session not found: {session_id}")
        current = box.session_id == session_id
        status = box.status if current else "stopped"
        if action == [] and method == "GET":
            session = {**box.session(), "id": session_id, "status": status}
            return _json({"session": session, "routes": []})
        if action == ["stop"] and method == "POST":
            if current:
                await self._stop(box)
            session = {
                **box.session(),
                "id": session_id,
                "status": box.status if current else status,
            }
            return _json({"session": session, "sandbox": box.sandbox()})
        if status in _TRANSITIONAL:
            raise _HttpError(422, _TRANSITIONAL[status], f"Sandbox is {status}")
        if status != "running":
            raise _HttpError(410, "sandbox_stopped", "Sandbox is stopped")
        if action == ["cmd"] and method == "POST":
            return await self._command(box, json.loads(body), params)
        if len(action) >= 2 and action[0] == "cmd":
            return await self._command_op(box, action[1], action[2:], method, params, body)
        if action == ["fs", "read"] and method == "POST":
            return await self._read(box, json.loads(body))
        if action == ["fs", "write"] and method == "POST":
            return self._write(box, body, headers.get("x-cwd", "/"))
        if action == ["fs", "mkdir"] and method == "POST":
            spec = json.loads(body)
            try:
                self._host_path(box, spec["path"], spec.get("cwd")).mkdir()
            except OSError as err:
                raise _HttpError(400, "bad_request", f"mkdir failed: {err}") from None
            return _json({})
        raise _HttpError(404, "not_found", f"No route for {method} {'/'.join(action)}")

    # --- commands ---------------------------------------------------------------------------

    async def _command(
        self, box: _Sandbox, spec: Mapping[str, Any], params: Mapping[str, str]
    ) -> _Response:
        cwd = spec.get("cwd") or "/workspace"
        argv = [spec["command"], *(spec.get("args") or [])]
        env = {"PATH": _PATH, "HOME": "/workspace", "LANG": "C.UTF-8", **(spec.get("env") or {})}
        wait = spec.get("wait") or params.get("wait") == "true"
        proc = await asyncio.create_subprocess_exec(
            *self._bwrap(box, cwd, env),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        command = _Command(
            f"cmd_{secrets.token_hex(8)}", argv[0], argv[1:], cwd, box.session_id, _now_ms(), proc
        )
        box.commands[command.id] = command
        self._spawn(self._run(command, spec.get("timeout")))
        if not wait:
            return _json({"command": command.payload()})
        return _Response(
            200, content_type="application/x-ndjson", stream=_ndjson(self._stream(command))
        )

    async def _run(self, command: _Command, timeout_ms: int | None) -> None:
        """Collect the command's output into its log, kill it at its timeout, record its exit."""
        proc = command.process
        assert proc.stdout is not None and proc.stderr is not None

        async def pump(name: str, reader: asyncio.StreamReader) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            while chunk := await reader.read(65536):
                if text := decoder.decode(chunk):
                    command.append({"stream": name, "data": text})
            if tail := decoder.decode(b"", final=True):
                command.append({"stream": name, "data": tail})

        pumps = asyncio.gather(pump("stdout", proc.stdout), pump("stderr", proc.stderr))
        try:
            if timeout_ms:
                try:
                    await asyncio.wait_for(proc.wait(), timeout_ms / 1000)
                except TimeoutError:
                    _kill_command(proc)
            await proc.wait()
            await pumps
        finally:
            if not pumps.done():
                pumps.cancel()
            rc = proc.returncode if proc.returncode is not None else -9
            command.exit_code = 128 - rc if rc < 0 else rc
            command.done.set()
            command.changed.set()

    async def _stream(self, command: _Command) -> AsyncIterator[dict[str, Any]]:
        """``wait=true``: the command record, its output as it comes, the final record."""
        yield {"command": {**command.payload(), "exitCode": None}}
        async for record in command.follow():
            yield record
        yield {"command": command.payload()}

    async def _command_op(
        self,
        box: _Sandbox,
        command_id: str,
        rest: list[str],
        method: str,
        params: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        command = box.commands.get(command_id)
        if command is None:
            raise _HttpError(404, "not_found", f"Command not found: {command_id}")
        if rest == ["kill"] and method == "POST":
            # Emulation: any signal kills the command's whole namespace (bwrap's pid 1).
            if command.exit_code is None:
                _kill_command(command.process)
            await command.done.wait()
            return _json({"command": command.payload()})
        if rest == ["logs"] and method == "GET":
            return _Response(
                200, content_type="application/x-ndjson", stream=_ndjson(command.follow())
            )
        if rest == [] and method == "GET":
            if params.get("wait") == "true":
                await command.done.wait()
            return _json({"command": command.payload()})
        raise _HttpError(404, "not_found", f"No route for {method} cmd/{command_id}")

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

    # --- files ------------------------------------------------------------------------------

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

    async def _read(self, box: _Sandbox, spec: Mapping[str, Any]) -> _Response:
        host = self._host_path(box, spec["path"], spec.get("cwd"))
        if not host.exists():
            return _Response(404, content_type=None)  # as Vercel's mock: a bare 404
        if not host.is_file():
            # Not in Vercel's mock (it fails there); the SDK knows no code for it either.
            raise _HttpError(400, "bad_request", f"{spec['path']} is not a regular file")
        return _Response(200, content_type="application/octet-stream", stream=_file_chunks(host))

    def _write(self, box: _Sandbox, body: bytes, cwd: str) -> _Response:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body)), mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    raise _HttpError(400, "bad_request", "only regular files are accepted")
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
        return _json({})


async def _disconnected(receive: _Receive) -> None:
    """Returns once the client has closed the connection (the request body is read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _new_session() -> str:
    return f"sess_{secrets.token_hex(8)}"


async def _ndjson(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for record in records:
        yield (json.dumps(record) + "\n").encode()


async def _dropping(
    body: bytes, stream: AsyncIterator[bytes] | None, after: int
) -> AsyncIterator[bytes]:
    """A response's first ``after`` chunks (NDJSON records, MiB of a file; half of a plain
    body), then a dropped connection."""
    if stream is None:
        yield body[: len(body) // 2]
        raise _Dropped
    sent = 0
    try:
        async for chunk in stream:
            if sent >= after:
                break
            sent += 1
            yield chunk
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    raise _Dropped


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, 1 << 20):
            yield chunk
    finally:
        file.close()


# --- serving --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake_vercel(root: Path, **options: Any) -> AsyncIterator[FakeVercelApi]:
    """Serve a :class:`FakeVercelApi` on 127.0.0.1 (a port of its own) in this event loop."""
    import uvicorn

    class _Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
            return contextlib.nullcontext()  # the test runner keeps its own signal handlers

    api = FakeVercelApi(root, **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        api,
        log_config=None,  # leave the test process's logging alone
        log_level="critical",  # a dropped connection is an exception in the app, on purpose
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        api.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        yield api
    finally:
        await api.aclose()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


class FakeVercelThread:
    """A :class:`FakeVercelApi` served from a thread of its own, for code that runs its own
    event loops (a service under ``TestClient``): the service reaches it by ``base_url``."""

    def __init__(self, root: Path, **options: Any) -> None:
        import threading

        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.api: FakeVercelApi | None = None
        self._thread = threading.Thread(
            target=self._main, args=(root, options), name="vercel-stand-in", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.api is not None, "the Vercel stand-in did not start"

    def _main(self, root: Path, options: dict[str, Any]) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            async with fake_vercel(root, **options) as api:
                self.api = api
                self._ready.set()
                await self._stop.wait()

        try:
            self._loop.run_until_complete(serve())
        except BaseException as error:  # reported to the starting thread
            self._error = error
            self._ready.set()
        finally:
            self._loop.close()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` (``inject``, ``hold``…) in the stand-in's own thread."""
        self._loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def fake_vercel_client(
    api: FakeVercelApi, *, credentials: bool = True, timeout: float = 30.0
) -> Any:
    """A real :class:`vercel.sandbox.SandboxClient` talking HTTP to ``api``.

    ``credentials=False`` leaves credential resolution to the SDK (``VERCEL_TOKEN``,
    ``VERCEL_TEAM_ID``, ``VERCEL_PROJECT_ID``), to test that path too.
    """
    from datetime import timedelta

    import httpx2
    from vercel.sandbox import SandboxClient, SandboxCredentials, SandboxServiceOptions

    async def fixed_credentials() -> Any:
        return SandboxCredentials(token=api.token, team_id=api.team_id, project_id=api.project_id)

    options = SandboxServiceOptions(
        base_url=api.base_url,
        credentials_factory=fixed_credentials if credentials else None,
        file_transfer_timeout=timedelta(seconds=timeout),
    )
    return SandboxClient.create(
        options=options,
        httpx_client_factory=lambda: httpx2.AsyncClient(timeout=timeout, trust_env=False),
    )


@contextlib.asynccontextmanager
async def fake_vercel_provider(
    root: Path, store: Any | None = None, **provider_options: Any
) -> AsyncIterator[Any]:
    """A :class:`~agent_sessions.sandbox.vercel.VercelProvider` on this stand-in, for tests.

    Sandboxes live under ``root``; snapshots go to ``store`` (default: a local store in
    ``root``). The stand-in is ``provider.fake``. Everything it started is killed on exit.
    """
    from agent_sessions.sandbox.vercel import VercelProvider
    from agent_sessions.settings import Settings
    from agent_sessions.snapshots import LocalSnapshotStore

    async with fake_vercel(root / "vercel") as api:
        client = fake_vercel_client(api)
        provider = VercelProvider(
            Settings(data_dir=root),
            store if store is not None else LocalSnapshotStore(root / "snapshots"),
            client=client,
            **provider_options,
        )
        provider.fake = api  # type: ignore[attr-defined]
        try:
            yield provider
        finally:
            await client.aclose()
