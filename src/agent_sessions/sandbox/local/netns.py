"""One network namespace per sandbox, shared by all of its commands, gone with the service.

Every exec is its own bwrap, so with bwrap's ``--unshare-net`` each command would get a private
loopback: a dev server started detached could never be reached by the next command. Instead
the host (root) keeps one namespace per running sandbox, held by a tiny *holder* process
(``unshare --net`` then a shell waiting on stdin), and starts each exec inside it with
``nsenter --net=/proc/<holder>/ns/net``; bwrap then unshares everything *but* the network.

* The namespace belongs to the host's user namespace, so the sandbox (in its own unprivileged
  user namespace) holds no capability over it: no new interfaces, routes or firewall rules.
* It holds only ``lo`` — plus, with ``AGENT_SESSIONS_SANDBOX_NETWORK=on``, a ``tap0`` wired to
  the outside by ``slirp4netns`` (its own sandbox and seccomp on, host loopback disabled).
  Never the host's namespace (architecture.md, Local sandbox).
* Holder and helper get ``PR_SET_PDEATHSIG`` (``setpriv --pdeathsig``): if the service dies they
  die, and the namespace with them, like the sandboxes themselves (``--die-with-parent``).
  Nothing is mounted, so nothing leaks on the host. ``stop()`` ends both.
* Every service process sharing the data directory (``serve`` and ``worker``) runs commands of
  the same sandbox in the same namespace, whichever of them started the holder. So holder and
  helper are found through a record in the sandbox's host directory (:class:`_Record`), as pid
  *and* start time: a sandbox can name a process anything (``exec -a``), so a command line
  proves nothing (issue 14, finding 3), and it cannot write the record nor choose a start time.
  A pidfd would need passing between processes; a bind-mounted namespace file would outlive a
  crashed service as a mount to clean up (ADR 5).

They are spawned from the event loop's thread on purpose: the parent-death signal follows the
*thread* that forked, and worker threads come and go.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from agent_sessions.sandbox.errors import SandboxSetupError, SandboxUnavailable

__all__ = ["SLIRP_DNS", "NetworkNamespace", "user_mode_networking"]

SLIRP_DNS = "10.0.2.3"
"""The resolver slirp4netns answers on inside the namespace."""

_RECORD = "netns.json"
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_children: dict[int, subprocess.Popen[bytes]] = {}
"""Holders and helpers this process started, kept so they are reaped once killed."""


@atexit.register
def _reap_all() -> None:
    """At exit, end and reap what we started (the kernel's parent-death signal would end them
    a moment later anyway; reaping here leaves no zombie and no unclosed pipe behind)."""
    for pid in list(_children):
        _reap(pid)


def user_mode_networking() -> str:
    """The path of ``slirp4netns``, or a :class:`SandboxSetupError` naming the fix."""
    tool = shutil.which("slirp4netns")
    if tool is None:
        raise SandboxSetupError(
            "AGENT_SESSIONS_SANDBOX_NETWORK=on needs slirp4netns for a separate network "
            "namespace (Debian: apt-get install slirp4netns); the host network is never shared"
        )
    return tool


@dataclass(frozen=True)
class _Process:
    """A process by pid *and* start time: a pid alone may be reused once its process is gone."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> _Process | None:
        start = _start_time(pid)
        return None if start is None else cls(pid, start)

    def alive(self) -> bool:
        if _start_time(self.pid) == self.start:
            return True
        _reap(self.pid)
        return False

    def kill(self) -> None:
        """SIGKILL through a pidfd opened *before* the check, so the signal cannot reach a
        process that took the pid in between."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            fd = None
        if fd is not None:
            try:
                if _start_time(self.pid) == self.start:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
        _reap(self.pid)


def _start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # after the name, which may hold anything
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def _reap(pid: int) -> None:
    """Wait for a holder or helper we started once it is dead (no zombie left behind)."""
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
        if child.stdin is not None:
            child.stdin.close()


class _Record:
    """``<home>/netns.json``: the holder and helper the service started for one sandbox.

    Root-owned, 0600, in the sandbox's host directory (outside the workspace): no sandbox can
    write it, and every service process sharing the data directory reads it. Changes happen
    under an ``flock`` on that directory, so two processes never start two holders.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / _RECORD

    def open(self) -> int:
        """The descriptor to ``flock``: closing it releases the lock, even while another
        thread still waits to take it (the lock goes with the last reference to the file)."""
        return os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def read(self) -> tuple[_Process | None, _Process | None]:
        try:
            data = json.loads(self.path.read_bytes())
            return _parse(data.get("holder")), _parse(data.get("helper"))
        except (OSError, ValueError, AttributeError):
            return None, None

    def write(self, holder: _Process, helper: _Process | None) -> None:
        data = {"holder": asdict(holder), "helper": asdict(helper) if helper else None}
        tmp = self.path.with_suffix(".tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o600)
            f.write(json.dumps(data))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _parse(value: object) -> _Process | None:
    if not isinstance(value, dict):
        return None
    pid, start = value.get("pid"), value.get("start")
    return _Process(pid, start) if type(pid) is int and type(start) is int else None


class NetworkNamespace:
    """The network namespace of the sandbox whose host directory is ``home``."""

    def __init__(self, home: Path, *, online: bool) -> None:
        self.online = online
        self._label = f"agent-sessions-netns:{home}"
        """The holder's argv[0], for people reading ``ps``: anyone can take it, so it is never
        used to find the holder (issue 14, finding 3); the record is."""
        self._record = _Record(home)
        self._holder: _Process | None = None
        self._helper: _Process | None = None
        self._lock = asyncio.Lock()

    def path(self) -> str | None:
        """``/proc/<holder>/ns/net`` if the namespace is up (a cheap check before each exec)."""
        if not self._current():
            self._holder, self._helper = self._record.read()
            if not self._current():
                return None
        assert self._holder is not None
        return f"/proc/{self._holder.pid}/ns/net"

    def _current(self) -> bool:
        """Whether the holder (and, online, the helper) we know of still run."""
        if self._holder is None or not self._holder.alive():
            return False
        return not self.online or (self._helper is not None and self._helper.alive())

    def _helper_pid(self) -> int | None:
        if self.path() is None or self._helper is None:
            return None
        return self._helper.pid

    async def ensure(self) -> str:
        """The namespace path, creating the namespace (and the helper) when missing."""
        async with self._lock:
            if (path := self.path()) is not None:
                return path
            fd = self._record.open()
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                # Another service process may have started it while we waited for the lock.
                self._holder, self._helper = self._record.read()
                if self._holder is None or not self._holder.alive():
                    self._holder, self._helper = await self._start_holder(), None
                if self.online and (self._helper is None or not self._helper.alive()):
                    self._helper = await self._start_helper(self._holder.pid)
                self._record.write(self._holder, self._helper)
            finally:
                os.close(fd)
            return f"/proc/{self._holder.pid}/ns/net"

    async def _start_holder(self) -> _Process:
        # The holder waits on stdin, which we hold open: EOF (we died) ends it, as does
        # PDEATHSIG. ``ready`` comes once ``lo`` is up; its label is for ``ps`` only.
        script = "ip link set lo up && exec -a \"$0\" /bin/bash -c 'echo ready && read -r _'"
        proc = subprocess.Popen(  # noqa: ASYNC220 (on the loop thread: see module doc)
            ["setpriv", "--pdeathsig=KILL", "--", "unshare", "--net", "--",
             "/bin/bash", "-c", script, self._label],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, env=_HOST_ENV,
        )  # fmt: skip
        _children[proc.pid] = proc
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        proc.stdout.close()
        holder = _Process.of(proc.pid)  # our unreaped child: its pid cannot be reused
        if line != b"ready\n" or holder is None:
            _reap(proc.pid)
            raise SandboxUnavailable("cannot create the sandbox network namespace")
        return holder

    async def _start_helper(self, holder: int) -> _Process:
        ready_r, ready_w = os.pipe()
        argv = ["setpriv", "--pdeathsig=KILL", "--", user_mode_networking(), "--configure",
                "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
                f"--ready-fd={ready_w}", str(holder), "tap0"]  # fmt: skip
        try:
            proc = subprocess.Popen(  # noqa: ASYNC220 (on the loop thread: see module doc)
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(ready_w,), start_new_session=True,
                env=_HOST_ENV,
            )  # fmt: skip
        finally:
            os.close(ready_w)
        _children[proc.pid] = proc

        def wait_ready() -> bool:
            with os.fdopen(ready_r, "rb") as ready:
                return ready.read(1) == b"1"  # EOF instead: it exited before configuring

        helper = _Process.of(proc.pid) if await asyncio.to_thread(wait_ready) else None
        if helper is None:
            _reap(proc.pid)
            raise SandboxUnavailable("slirp4netns failed to configure the sandbox network")
        return helper

    def remove(self) -> None:
        """Kill helper and holder; the kernel frees the namespace with its last process.

        Blocking (it waits for the record's lock): call it from a worker thread.
        """
        known = [self._helper, self._holder]
        self._holder = self._helper = None
        try:
            fd = self._record.open()
        except FileNotFoundError:  # the sandbox's directory is gone, and its record with it
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                known[:0] = self._record.read()
                self._record.clear()
            for proc in known:
                if proc is not None:
                    proc.kill()
        finally:
            if fd is not None:
                os.close(fd)
