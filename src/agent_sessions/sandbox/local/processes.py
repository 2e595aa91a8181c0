"""Finding and killing every host process of one sandbox.

Each exec is its own bwrap with its own pid namespace, so killing bwrap's namespace init tears
the whole tree down. ``stop()`` must not rely on our own bookkeeping though (the sandbox may
have been started by another service process): it scans ``/proc`` for the sandbox's host uid
and for the sandbox's :class:`Marker` (launchers and bwrap), kills them, and checks nothing
remains. Freezing (before a snapshot) must reach every process itself, not just bwrap: it also
takes the descendants of what the scan finds, which covers a service that is not root (no uid
of the sandbox's own; the processes inside share the service's uid but descend from bwrap).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from agent_sessions.sandbox.errors import SandboxUnavailable

__all__ = ["Marker", "freeze_all", "kill_all", "sandbox_pids"]

_VARIABLE = "AGENT_SESSIONS_SANDBOX"


@dataclass(frozen=True)
class Marker:
    """Marks the host processes that start one sandbox's commands (launchers, then bwrap): a
    variable in their environment, which bwrap's ``--clearenv`` keeps from the command itself.

    Its value is a digest of the workspace path: unique on the host (sandbox names repeat
    across data directories) yet no host path, since the sandbox reads bwrap's environment as
    ``/proc/1/environ`` (issue 14, finding 11). Only processes of the service's own uid count:
    a sandbox (its own uid when the service is root) may copy the variable but not that.
    """

    value: str

    @classmethod
    def of(cls, workspace: Path) -> Marker:
        return cls(hashlib.sha256(os.fsencode(workspace)).hexdigest()[:32])

    @property
    def env(self) -> dict[str, str]:
        """The launchers' environment entry."""
        return {_VARIABLE: self.value}

    def found_in(self, environ: bytes) -> bool:
        return f"\0{_VARIABLE}={self.value}\0".encode() in b"\0" + environ


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process went away while we looked
        return b""


def _field(status: bytes, name: bytes) -> bytes:
    for line in status.splitlines():
        if line.startswith(name):
            return line.split()[1]
    return b""


def _scan(uid: int | None, marker: Marker) -> dict[int, bytes]:
    """Live (non-zombie) processes of the sandbox with their ``/proc/<pid>/status``: owned by
    host ``uid``, or of the service's uid and marked; and their descendants."""
    me, service = os.getpid(), str(os.geteuid()).encode()
    found: dict[int, bytes] = {}
    parents: dict[int, int] = {}
    statuses: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        status = _read(f"/proc/{entry}/status")
        if not status or b"\nState:\tZ" in status:
            continue
        pid = int(entry)
        statuses[pid] = status
        parents[pid] = int(_field(status, b"PPid:") or 0)
        real_uid = _field(status, b"Uid:")
        if (uid is not None and real_uid == str(uid).encode()) or (
            real_uid == service and marker.found_in(_read(f"/proc/{entry}/environ"))
        ):
            found[pid] = status
    grew = True
    while grew:  # descendants, however deep (/proc lists no children for other namespaces)
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found[pid] = statuses[pid]
                grew = True
    return found


def sandbox_pids(uid: int | None, marker: Marker) -> list[int]:
    """Live (non-zombie) pids of the sandbox (see :func:`_scan`)."""
    return sorted(_scan(uid, marker))


def kill_all(uid: int | None, marker: Marker, *, deadline: float = 5.0) -> None:
    """SIGKILL until nothing of the sandbox is left; blocking, call from a worker thread."""
    end = time.monotonic() + deadline
    while pids := sandbox_pids(uid, marker):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > end:
            raise SandboxUnavailable(f"sandbox processes survive SIGKILL: {pids[:10]}")
        time.sleep(0.01)


def _stopped(status: bytes) -> bool:
    """Job-control stop (``T``) or a tracing stop (``t``)."""
    return b"\nState:\tT" in status or b"\nState:\tt" in status


def freeze_all(uid: int | None, marker: Marker, *, deadline: float = 5.0) -> None:
    """SIGSTOP until one scan finds every process of the sandbox stopped; blocking.

    A stopped process cannot fork, write or truncate, so the workspace holds still for a
    snapshot. SIGSTOP cannot be caught or ignored, and from the host it reaches a pid
    namespace's init too. It is not a seal: processes that send each other SIGCONT can slip
    out again, which the caller copes with (a snapshot that still fails is retried after
    :func:`kill_all`). A cgroup's freezer would be atomic, but only a delegated cgroup has one;
    this works on every host. Only :func:`kill_all` follows: nothing thaws a frozen sandbox.
    """
    end = time.monotonic() + deadline
    while running := [pid for pid, status in _scan(uid, marker).items() if not _stopped(status)]:
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        if time.monotonic() > end:
            raise SandboxUnavailable(f"sandbox processes run on despite SIGSTOP: {running[:10]}")
        time.sleep(0.001)
