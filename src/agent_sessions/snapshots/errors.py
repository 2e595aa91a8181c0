"""Errors raised by snapshot stores.

Each also derives from the generic class of :mod:`agent_sessions.exceptions` that says how the
API answers it, so ``api/`` never needs to know about snapshots.
"""

from __future__ import annotations

from agent_sessions.exceptions import AgentSessionsError, InvalidInput, NotFound, UpstreamError

__all__ = [
    "InvalidSnapshotUrl",
    "SnapshotCorrupt",
    "SnapshotError",
    "SnapshotNotFound",
    "SnapshotStoreUnavailable",
    "UnsafeArchive",
]


class SnapshotError(AgentSessionsError):
    """Base of every error a snapshot store raises on purpose."""


class InvalidSnapshotUrl(SnapshotError, InvalidInput):
    """The URL is not one this store writes (another scheme, bucket or prefix, or a bad id)."""


class SnapshotNotFound(SnapshotError, NotFound):
    """No snapshot exists at that URL (deleted, or never completed)."""


class SnapshotCorrupt(SnapshotError):
    """The archive is truncated, fails its hash, or is not a valid tar + zstd stream.

    Raised before the workspace is touched: restore extracts into a staging directory and only
    swaps it in once the whole archive has been read and verified.
    """


class UnsafeArchive(SnapshotCorrupt):
    """The archive holds a member that could escape the workspace (absolute or ``..`` paths,
    links pointing outside, device nodes). Our own archives never do; a tampered one might."""


class SnapshotStoreUnavailable(SnapshotError, UpstreamError):
    """The backing store (S3) failed or could not be reached."""
