"""One network namespace per sandbox, shared by all of its commands, gone with the service.

Every exec is its own bwrap, so with bwrap's ``--unshare-net`` each command would get a private
loopback: a dev server started detached could never be reached by the next command. Instead
the host (root) keeps one namespace per running sandbox, held by a tiny *holder* process
(``unshare --net`` then ``sleep``), and starts each exec inside it with
``nsenter --net=/proc/<holder>/ns/net``; bwrap then unshares everything *but* the network.

* The namespace belongs to the host's user namespace, so the sandbox (in its own unprivileged
  user namespace) holds no capability over it: no new interfaces, routes or firewall rules.
* It holds only ``lo`` — plus, with ``AGENT_SESSIONS_SANDBOX_NETWORK=on``, a ``tap0`` wired to
  the outside by ``slirp4netns`` (its own sandbox and seccomp on, host loopback disabled).
  Never the host's namespace (checklist §0.3).
* Holder and helper get ``PR_SET_PDEATHSIG`` (``setpriv --pdeathsig``): if the service dies they
  die, and the namespace with them, like the sandboxes themselves (``--die-with-parent``).
  Nothing is mounted, so nothing leaks on the host. ``stop()`` ends both.

They are spawned from the event loop's thread on purpose: the parent-death signal follows the
*thread* that forked, and worker threads come and go.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from agent_sessions.sandbox.errors import SandboxSetupError, SandboxUnavailable

__all__ = ["SLIRP_DNS", "NetworkNamespace", "user_mode_networking"]

SLIRP_DNS = "10.0.2.3"
"""The resolver slirp4netns answers on inside the namespace."""

_HELPER_NAME = "agent-sessions-slirp4netns"
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_children: dict[int, subprocess.Popen[bytes]] = {}
"""Holders and helpers this process started, kept so they are reaped once killed."""


@atexit.register
def _reap_all() -> None:
    """At exit, end and reap what we started (the kernel's parent-death signal would end them
    a moment later anyway; reaping here leaves no zombie and no unclosed pipe behind)."""
    for pid in list(_children):
        _kill(pid)


def user_mode_networking() -> str:
    """The path of ``slirp4netns``, or a :class:`SandboxSetupError` naming the fix."""
    tool = shutil.which("slirp4netns")
    if tool is None:
        raise SandboxSetupError(
            "AGENT_SESSIONS_SANDBOX_NETWORK=on needs slirp4netns for a separate network "
            "namespace (Debian: apt-get install slirp4netns); the host network is never shared"
        )
    return tool


def _find(tag: bytes) -> int | None:
    """The live process whose command line starts with ``tag`` (started by any service)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(tag):
                        return int(entry)
            except OSError:
                continue
    return None


def _alive(pid: int, tag: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(tag)
    except OSError:
        return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
        if child.stdin is not None:
            child.stdin.close()


class NetworkNamespace:
    """The network namespace of the sandbox whose host directory is ``home``."""

    def __init__(self, home: Path, *, online: bool) -> None:
        self.online = online
        # argv[0] of the holder (``exec -a``): how we, or a restarted service, find it again.
        self._holder_tag = os.fsencode(f"agent-sessions-netns:{home}") + b"\0"
        self._pid: int | None = None
        self._helper: int | None = None
        self._lock = asyncio.Lock()

    def path(self) -> str | None:
        """``/proc/<holder>/ns/net`` if the namespace is up (a cheap check before each exec)."""
        if self._pid is None or not _alive(self._pid, self._holder_tag):
            self._pid = _find(self._holder_tag)
        if self._pid is None:
            return None
        if self.online and self._helper_pid() is None:
            return None
        return f"/proc/{self._pid}/ns/net"

    def _helper_pid(self) -> int | None:
        if self._pid is None:
            return None
        head, tail = _HELPER_NAME.encode() + b"\0", f"\0{self._pid}\0tap0\0".encode()

        def is_helper(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                return False
            return cmdline.startswith(head) and cmdline.endswith(tail)

        if self._helper is not None and is_helper(self._helper):
            return self._helper
        self._helper = next(
            (int(e) for e in os.listdir("/proc") if e.isdigit() and is_helper(int(e))), None
        )
        return self._helper

    async def ensure(self) -> str:
        """The namespace path, creating the namespace (and the helper) when missing."""
        async with self._lock:
            if (path := self.path()) is not None:
                return path
            if self._pid is None:
                self._pid = await self._start_holder()
            if self.online and self._helper_pid() is None:
                await self._start_helper(self._pid)
            return f"/proc/{self._pid}/ns/net"

    async def _start_holder(self) -> int:
        tag = os.fsdecode(self._holder_tag[:-1])
        # Only once ``lo`` is up does the holder take its tag as argv[0] (``exec -a``), so no
        # one can find it, and use its namespace, earlier. Before ``unshare`` ran, the process
        # is in the *host* namespace: that is why the tag must not show until then. It then
        # waits on stdin, which we hold open: EOF (we died) ends it, as does PDEATHSIG.
        script = "ip link set lo up && exec -a \"$0\" /bin/bash -c 'echo ready && read -r _'"
        proc = subprocess.Popen(  # noqa: ASYNC220 (on the loop thread: see module doc)
            ["setpriv", "--pdeathsig=KILL", "--", "unshare", "--net", "--",
             "/bin/bash", "-c", script, tag],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, env=_HOST_ENV,
        )  # fmt: skip
        _children[proc.pid] = proc
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        proc.stdout.close()
        if line != b"ready\n":
            _kill(proc.pid)
            raise SandboxUnavailable("cannot create the sandbox network namespace")
        return proc.pid

    async def _start_helper(self, holder: int) -> None:
        ready_r, ready_w = os.pipe()
        slirp = [user_mode_networking(), "--configure", "--mtu=65520", "--disable-host-loopback",
                 "--enable-sandbox", "--enable-seccomp", f"--ready-fd={ready_w}", str(holder),
                 "tap0"]  # fmt: skip
        # ``exec -a`` names it, so ``_helper_pid`` can tell it from other sandboxes' helpers.
        argv = ["setpriv", "--pdeathsig=KILL", "--", "/bin/bash", "-c",
                f'exec -a {_HELPER_NAME} "$@"', "bash", *slirp]  # fmt: skip
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

        if not await asyncio.to_thread(wait_ready):
            _kill(proc.pid)
            raise SandboxUnavailable("slirp4netns failed to configure the sandbox network")

    def remove(self) -> None:
        """Kill helper and holder; the kernel frees the namespace with its last process."""
        if self._pid is None or not _alive(self._pid, self._holder_tag):
            self._pid = _find(self._holder_tag)
        if (helper := self._helper_pid()) is not None:
            _kill(helper)
        if self._pid is not None:
            _kill(self._pid)
        self._pid = None
