"""Finding, freezing and killing every host process of one sandbox.

Each exec is its own bwrap with its own pid namespace, so killing bwrap's namespace init tears
the whole tree down. ``stop()`` must not rely on our own bookkeeping though (the sandbox may
have been started by another service process): it scans ``/proc`` for the sandbox's host uid
and for bwrap command lines that bind its workspace, kills them, and checks nothing remains.
Freezing (before a snapshot) must reach every process itself, not just bwrap: it also takes
the descendants of what the scan finds, which covers a service that is not root (no uid of
the sandbox's own; the processes inside share the service's uid but descend from bwrap).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from agent_sessions.sandbox.errors import SandboxUnavailable

__all__ = ["freeze_all", "kill_all", "sandbox_pids"]


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


def _scan(uid: int | None, marker: bytes) -> dict[int, bytes]:
    """Live (non-zombie) processes of the sandbox with their ``/proc/<pid>/status``, and their
    descendants."""
    me = os.getpid()
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
        owned = uid is not None and _field(status, b"Uid:") == str(uid).encode()
        if owned or marker in _read(f"/proc/{entry}/cmdline"):
            found[pid] = status
    grew = True
    while grew:  # descendants, however deep (/proc lists no children for other namespaces)
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found and pid != me:
                found[pid] = statuses[pid]
                grew = True
    return found


def sandbox_pids(uid: int | None, marker: bytes) -> list[int]:
    """Live (non-zombie) pids owned by host ``uid`` or whose command line holds ``marker``, and
    their descendants."""
    return sorted(_scan(uid, marker))


def kill_all(uid: int | None, marker: bytes, *, deadline: float = 5.0) -> None:
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


def freeze_all(uid: int | None, marker: bytes, *, deadline: float = 5.0) -> None:
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
