"""Finding and killing every host process of one sandbox.

Each exec is its own bwrap with its own pid namespace, so killing bwrap's namespace init tears
the whole tree down. ``stop()`` must not rely on our own bookkeeping though (the sandbox may
have been started by another service process): it scans ``/proc`` for the sandbox's host uid
and for the sandbox's :class:`Marker` (launchers and bwrap), kills them, and checks nothing
remains.
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

__all__ = ["Marker", "kill_all", "sandbox_pids"]

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


def sandbox_pids(uid: int | None, marker: Marker) -> list[int]:
    """Live (non-zombie) pids owned by host ``uid``, or of the service's uid and marked."""
    me, service = os.getpid(), os.geteuid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        status = _read(f"/proc/{entry}/status")
        if not status or b"\nState:\tZ" in status:
            continue
        real_uid = -1
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                real_uid = int(line.split()[1])
                break
        if (uid is not None and real_uid == uid) or (
            real_uid == service and marker.found_in(_read(f"/proc/{entry}/environ"))
        ):
            found.append(int(entry))
    return found


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
