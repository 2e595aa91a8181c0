"""The snapshot store interface: a workspace directory in, an opaque URL out, and back.

Stores never put host paths in URLs (they end up in ``sessions.snapshot_url``, which clients
see). Every method runs its blocking work in a worker thread, so the event loop keeps serving
while hundreds of megabytes are compressed.
"""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent_sessions.snapshots.errors import InvalidSnapshotUrl

__all__ = ["SnapshotInfo", "SnapshotStore", "new_snapshot_id", "validate_snapshot_id"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_snapshot_id(snapshot_id: str) -> str:
    """Snapshot ids become file and object names: ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$``."""
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id):
        raise InvalidSnapshotUrl(f"invalid snapshot id {snapshot_id!r}")
    return snapshot_id


def new_snapshot_id(sandbox_name: str) -> str:
    """A fresh id for a snapshot of ``sandbox_name``. The fixed prefix keeps the id valid for
    every sandbox name, including nanoids that start with ``-`` or ``_``."""
    return validate_snapshot_id(f"snap-{sandbox_name}-{secrets.token_hex(8)}")


@dataclass(frozen=True)
class SnapshotInfo:
    """Where a workspace snapshot lives; ``url`` is opaque and never a host path.

    What a store's ``save`` and a sandbox's ``snapshot`` return (the sandbox package imports it
    from here: providers snapshot through a store, never the other way round).
    """

    url: str
    size_bytes: int
    sha256: str
    created_at: datetime


class SnapshotStore(ABC):
    """Saves workspaces as verified tar + zstd archives and restores them atomically.

    Guarantees shared by every store:

    * ``save`` makes the archive visible under its final name only once it is complete and
      durable, then re-reads it to check the hash; a crash leaves no partial archive behind
      that name (and never touches other snapshots).
    * ``restore`` extracts into a staging directory beside ``workspace``, checks the hash, and
      swaps the tree in atomically; a crash leaves the old or the new workspace complete, and a
      retried restore cleans up and finishes the job. With ``fresh=True`` the caller provides
      that atomicity instead (a workspace on its own filesystem cannot be renamed: the local
      provider restores into a new image and swaps the images).

    Use a fresh ``snapshot_id`` per save; re-saving an id replaces that snapshot.
    """

    kind: str
    """``local`` or ``s3``."""

    @abstractmethod
    async def save(self, workspace: Path, snapshot_id: str) -> SnapshotInfo:
        """Archive ``workspace`` (not following symlinks) as snapshot ``snapshot_id``."""

    @abstractmethod
    async def restore(
        self,
        url: str,
        workspace: Path,
        *,
        owner: tuple[int, int] | None = None,
        fresh: bool = False,
    ) -> None:
        """Replace ``workspace`` (created if missing) with the snapshot at ``url``.

        ``owner`` (host uid, gid) is applied to the restored tree when running as root, before
        it becomes visible. Raises :class:`SnapshotNotFound`, :class:`SnapshotCorrupt` or
        :class:`UnsafeArchive`, each with the workspace untouched.

        ``fresh``: ``workspace`` is an empty directory made for this restore, which the caller
        discards if it fails: the archive is extracted straight into it (no staging directory
        beside it, no swap).
        """

    @abstractmethod
    async def delete(self, url: str) -> None:
        """Remove a snapshot; deleting a missing one is not an error."""

    @abstractmethod
    async def exists(self, url: str) -> bool:
        """Whether a complete snapshot lives at ``url``."""

    def close(self) -> None:  # noqa: B027 (most stores hold nothing open)
        """Release what the store holds open (an S3 client's pooled connections)."""

    def owns(self, url: str) -> bool:
        """Whether ``url`` has this store's shape (scheme, bucket, prefix)."""
        try:
            self._parse(url)
        except InvalidSnapshotUrl:
            return False
        return True

    @abstractmethod
    def _parse(self, url: str) -> str:
        """The snapshot id in ``url``; :class:`InvalidSnapshotUrl` if this store did not make it."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
