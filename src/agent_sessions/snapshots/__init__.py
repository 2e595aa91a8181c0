"""Workspace snapshots: tar + zstd archives in a local directory or an S3-compatible bucket.

The index of the package. ``base`` is the store interface, ``local`` and ``s3`` the two stores.
Private modules: ``_archive`` (workspace ⇄ tar + zstd), ``_tarwriter`` (fast tar headers),
``_untar`` (the extractor that never follows a link), ``_sparse`` (holes kept both ways),
``_streams`` (hashing, buffering and threaded decompression), ``_swap`` (the atomic workspace
swap and its crash recovery) and ``_restore`` (the pipeline both stores share).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_sessions.snapshots.base import SnapshotInfo, SnapshotStore, validate_snapshot_id
from agent_sessions.snapshots.errors import (
    InvalidSnapshotUrl,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotNotFound,
    SnapshotStoreUnavailable,
    UnsafeArchive,
)
from agent_sessions.snapshots.local import LocalSnapshotStore

if TYPE_CHECKING:
    from agent_sessions.settings import Settings

__all__ = [
    "InvalidSnapshotUrl",
    "LocalSnapshotStore",
    "SnapshotCorrupt",
    "SnapshotError",
    "SnapshotInfo",
    "SnapshotNotFound",
    "SnapshotStore",
    "SnapshotStoreUnavailable",
    "UnsafeArchive",
    "store_from_settings",
    "validate_snapshot_id",
]


def store_from_settings(settings: Settings) -> SnapshotStore:
    """The store ``AGENT_SESSIONS_SNAPSHOT_STORE`` selects (boto3 is imported only for S3)."""
    if settings.snapshot_store == "s3":
        from agent_sessions.snapshots.s3 import S3SnapshotStore

        assert settings.s3_bucket is not None  # enforced by Settings
        return S3SnapshotStore(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
        )
    return LocalSnapshotStore(settings.data_dir / "snapshots")
