"""One dedicated, unprivileged host uid per sandbox, when the service runs as root.

Running bwrap as host root leaves the sandbox mapped to uid 0 on the host (it could read
0640 root files) and exempt from RLIMIT_NPROC (architecture.md, Local sandbox). A uid per sandbox
makes file ownership, NPROC and "kill everything of uid U" per sandbox. The name → uid map is a
JSON file in the data directory under an ``fcntl`` lock, so service processes sharing it never hand
out a uid twice.

Two services with *different* data directories on one host (a dev and a test instance, or
parallel test runs) must not share a uid either, or one's ``stop()`` would kill the other's
sandbox. So every allocation is also claimed host-wide, with an ``O_EXCL`` file per uid under
``/var/lib/agent-sessions/uids`` naming its owner (map file and sandbox name). A claim whose
owner map is gone (a deleted data directory), or no longer lists it, is stale and reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from agent_sessions.datadir import private
from agent_sessions.sandbox.errors import SandboxUnavailable

log = logging.getLogger(__name__)

__all__ = ["HOST_CLAIMS", "UidAllocator"]

HOST_CLAIMS = Path("/var/lib/agent-sessions/uids")
_CLAIM_GRACE = 60.0
"""Seconds a claim may go unlisted in its map: an allocation claims first, then writes."""


def _stale(claim: Path, held_by: bytes, uid: int) -> bool:
    """Whether the owner named in a claim no longer holds ``uid``."""
    map_path, _, name = held_by.partition(b"\0")
    try:
        table = json.loads(Path(os.fsdecode(map_path)).read_text())
    except FileNotFoundError:
        return True  # the data directory is gone
    except (OSError, ValueError):
        return False  # unreadable: do not take chances
    if table.get(name.decode(errors="replace")) == uid:
        return False
    try:
        return time.time() - claim.stat().st_mtime > _CLAIM_GRACE
    except FileNotFoundError:
        return True


class UidAllocator:
    """Allocates uids from ``[base, base + count)``; blocking, call from a worker thread."""

    def __init__(self, path: Path, base: int, count: int, claims: Path | None = HOST_CLAIMS):
        self.path = path
        self.base = base
        self.count = count
        self.claims = claims
        self._owner = os.fsencode(path.resolve())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                table: dict[str, int] = json.loads(self.path.read_text())
            except FileNotFoundError:
                table = {}
            before = dict(table)
            yield table
            if table != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.unlink(missing_ok=True)
                with open(tmp, "xb", opener=private) as f:
                    f.write(json.dumps(table, sort_keys=True).encode())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
        finally:
            os.close(fd)  # releases the lock

    def _claim(self, uid: int, name: str) -> bool:
        """Take ``uid`` host-wide for (this map, ``name``); True if ours now."""
        if self.claims is None:
            return True
        try:
            self.claims.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:  # e.g. a read-only /var: say so, keep the per-data-dir map
            log.warning("host-wide sandbox uid claims disabled (%s): %s", self.claims, err)
            self.claims = None
            return True
        owner = self._owner + b"\0" + name.encode()
        claim = self.claims / str(uid)
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            try:
                held_by = claim.read_bytes()
                if held_by == owner:
                    return True
                if not _stale(claim, held_by, uid):
                    return False
                claim.unlink()
            except FileNotFoundError:  # released meanwhile
                pass
            return self._claim(uid, name)
        with os.fdopen(fd, "wb") as f:
            f.write(owner)
        return True

    def _unclaim(self, uid: int, name: str) -> None:
        if self.claims is None:
            return
        claim = self.claims / str(uid)
        with contextlib.suppress(FileNotFoundError):
            if claim.read_bytes() == self._owner + b"\0" + name.encode():
                claim.unlink()

    def lookup(self, name: str) -> int | None:
        """The uid of ``name``, re-claiming it host-wide (claims vanish at reboot)."""
        with self._locked() as table:
            uid = table.get(name)
            if uid is not None and not self._claim(uid, name):
                raise SandboxUnavailable(
                    f"host uid {uid} of sandbox {name!r} is claimed by another agent-sessions "
                    "data directory on this host; give each its own AGENT_SESSIONS_SANDBOX_UID_BASE"
                )
            return uid

    def allocate(self, name: str) -> int:
        """The uid of ``name``, allocating the lowest free one the first time."""
        with self._locked() as table:
            if name in table and self._claim(table[name], name):
                return table[name]
            table.pop(name, None)
            used = set(table.values())
            for uid in range(self.base, self.base + self.count):
                if uid not in used and self._claim(uid, name):
                    table[name] = uid
                    return uid
        raise SandboxUnavailable(
            f"all {self.count} sandbox uids from {self.base} are in use "
            "(raise AGENT_SESSIONS_SANDBOX_UID_COUNT or destroy old sandboxes)"
        )

    def release(self, name: str) -> None:
        with self._locked() as table:
            uid = table.pop(name, None)
            if uid is not None:
                self._unclaim(uid, name)
