"""Finding and killing every host process of one sandbox.

Each exec is its own bwrap with its own pid namespace, so killing bwrap's namespace init tears
the whole tree down. ``stop()`` must not rely on our own bookkeeping though (the sandbox may
have been started by another service process): it scans ``/proc`` for the sandbox's host uid
and for bwrap command lines that bind its workspace, kills them, and checks nothing remains.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from agent_sessions.sandbox.errors import SandboxUnavailable

__all__ = ["kill_all", "sandbox_pids"]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process went away while we looked
        return b""


def sandbox_pids(uid: int | None, marker: bytes) -> list[int]:
    """Live (non-zombie) pids owned by host ``uid`` or whose command line holds ``marker``."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        status = _read(f"/proc/{entry}/status")
        if not status or b"\nState:\tZ" in status:
            continue
        owned = False
        if uid is not None:
            for line in status.splitlines():
                if line.startswith(b"Uid:"):
                    owned = int(line.split()[1]) == uid
                    break
        if owned or marker in _read(f"/proc/{entry}/cmdline"):
            found.append(int(entry))
    return found


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
