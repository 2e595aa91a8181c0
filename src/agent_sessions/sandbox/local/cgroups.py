"""cgroup v2 limits (memory, swap, pids) for sandboxes, when the host delegates a subtree.

A cgroup is the only limit that covers a whole sandbox: memory including tmpfs pages, the
number of tasks whatever their uid, and ``cgroup.kill`` for the tree. We never guess: the
operator names a delegated cgroup v2 directory (``AGENT_SESSIONS_SANDBOX_CGROUP_ROOT``) that
we may write to and that holds no processes itself. Otherwise sandboxes run on rlimits only and
:func:`detect` says why, so :meth:`LocalProvider.capabilities` and the start-up log report it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "CgroupSupport", "detect"]

_NEEDED = ("memory", "pids")


@dataclass(frozen=True)
class CgroupSupport:
    """Whether per-sandbox cgroups are in force, and if not, why."""

    root: Path | None
    reason: str

    @property
    def available(self) -> bool:
        return self.root is not None


def _host_layout() -> str:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "cgroup v2 is mounted at /sys/fs/cgroup"
    if Path("/sys/fs/cgroup/unified/cgroup.controllers").exists():
        return "the host uses the hybrid cgroup v1/v2 layout (controllers are on v1)"
    return "no cgroup v2 hierarchy found"


def detect(root: Path | None) -> CgroupSupport:
    """Check the configured delegated cgroup (``None`` when unset)."""
    if root is None:
        return CgroupSupport(
            None,
            f"AGENT_SESSIONS_SANDBOX_CGROUP_ROOT is not set ({_host_layout()}); sandboxes get "
            "rlimits only: no memory cap, no per-sandbox task cap beyond RLIMIT_NPROC",
        )
    try:
        controllers = (root / "cgroup.controllers").read_text().split()
    except OSError as err:
        return CgroupSupport(None, f"{root} is not a cgroup v2 directory ({err.strerror})")
    missing = [c for c in _NEEDED if c not in controllers]
    if missing:
        return CgroupSupport(None, f"{root} lacks the {', '.join(missing)} controller(s)")
    if not os.access(root, os.W_OK):
        return CgroupSupport(None, f"{root} is not writable by the service (not delegated)")
    if (root / "cgroup.procs").read_text().strip():
        return CgroupSupport(None, f"{root} holds processes; delegate an empty cgroup")
    try:
        (root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in _NEEDED))
    except OSError as err:
        return CgroupSupport(None, f"cannot enable controllers in {root} ({err.strerror})")
    return CgroupSupport(root, f"per-sandbox cgroups under {root}")


@dataclass(frozen=True)
class CgroupLimits:
    """One sandbox's cgroup: created on demand, killed with ``cgroup.kill``."""

    path: Path
    memory_max: int
    pids_max: int

    def ensure(self) -> None:
        self.path.mkdir(exist_ok=True)
        (self.path / "memory.max").write_text(str(self.memory_max))
        with contextlib.suppress(FileNotFoundError):  # absent when swap accounting is off
            (self.path / "memory.swap.max").write_text("0")
        (self.path / "pids.max").write_text(str(self.pids_max))

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` preceded by a shell that moves itself into the cgroup, then execs.

        Joining before exec means no child of bwrap ever runs outside the cgroup.
        """
        procs = str(self.path / "cgroup.procs")
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *argv]

    def kill(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / "cgroup.kill").write_text("1")

    def remove(self) -> None:
        self.kill()
        with contextlib.suppress(FileNotFoundError):
            self.path.rmdir()
