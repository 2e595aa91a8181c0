"""Snapshots as files under ``DATA_DIR/snapshots`` (the embedded default).

Layout: ``<id>.tar.zst`` plus ``<id>.tar.zst.sha256`` in ``sha256sum`` format, so an operator
can check an archive with ``sha256sum -c`` and unpack it with ``tar -I zstd -xf``. The URL is
``local://snapshots/<id>.tar.zst``: it names the snapshot, never the host path.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from agent_sessions.datadir import PRIVATE_DIR, private
from agent_sessions.faults import fault_point
from agent_sessions.snapshots._archive import write_archive
from agent_sessions.snapshots._restore import restore_stream
from agent_sessions.snapshots._streams import CHUNK, HashingWriter
from agent_sessions.snapshots._swap import fsync_dir
from agent_sessions.snapshots.base import SnapshotInfo, SnapshotStore, validate_snapshot_id
from agent_sessions.snapshots.errors import (
    InvalidSnapshotUrl,
    SnapshotCorrupt,
    SnapshotNotFound,
)

__all__ = ["LocalSnapshotStore"]

_URL = re.compile(r"local://snapshots/(?P<id>[^/]+)\.tar\.zst")
_SUFFIX = ".tar.zst"


class LocalSnapshotStore(SnapshotStore):
    """Snapshots in one host directory; single-host, like the local sandbox provider."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def _parse(self, url: str) -> str:
        match = _URL.fullmatch(url) if isinstance(url, str) else None
        if match is None:
            raise InvalidSnapshotUrl(f"not a local snapshot URL: {url!r}")
        return validate_snapshot_id(match["id"])

    def _paths(self, url: str) -> tuple[Path, Path]:
        archive = self.root / f"{self._parse(url)}{_SUFFIX}"
        return archive, archive.with_name(archive.name + ".sha256")

    # --- save ------------------------------------------------------------------------------

    async def save(self, workspace: Path, snapshot_id: str) -> SnapshotInfo:
        validate_snapshot_id(snapshot_id)
        return await asyncio.to_thread(self._save, workspace, snapshot_id)

    def _save(self, workspace: Path, snapshot_id: str) -> SnapshotInfo:
        url = f"local://snapshots/{snapshot_id}{_SUFFIX}"
        archive, sidecar = self._paths(url)
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        for stale in self.root.glob(f".{archive.name}.*.tmp"):  # left by a crashed save
            stale.unlink(missing_ok=True)
        tmp = self.root / f".{archive.name}.{secrets.token_hex(6)}.tmp"
        try:
            with open(tmp, "xb", opener=private) as f:
                sink = HashingWriter(f)
                write_archive(workspace, sink)
                fault_point("save.written")
                f.flush()
                os.fsync(f.fileno())
            fault_point("save.synced")
            # Drop the previous hash before the archive changes, so no moment pairs a new
            # archive with an old hash; an archive without a hash is still self-checking
            # (zstd frame checksum).
            if sidecar.exists():
                sidecar.unlink()
                fsync_dir(self.root)
            os.rename(tmp, archive)
            fsync_dir(self.root)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fault_point("save.renamed")
        digest = sink.hexdigest()
        _write_durably(sidecar, f"{digest}  {archive.name}\n".encode())
        fault_point("save.recorded")
        if _file_digest(archive) != (digest, sink.size):
            self._remove(archive, sidecar)
            raise SnapshotCorrupt(f"snapshot {snapshot_id} failed verification after writing")
        return SnapshotInfo(
            url=url, size_bytes=sink.size, sha256=digest, created_at=datetime.now(UTC)
        )

    # --- restore ---------------------------------------------------------------------------

    async def restore(
        self,
        url: str,
        workspace: Path,
        *,
        owner: tuple[int, int] | None = None,
        fresh: bool = False,
    ) -> None:
        archive, sidecar = self._paths(url)
        await asyncio.to_thread(self._restore, archive, sidecar, workspace, owner, fresh)

    def _restore(
        self,
        archive: Path,
        sidecar: Path,
        workspace: Path,
        owner: tuple[int, int] | None,
        fresh: bool,
    ) -> None:
        expected = _read_sidecar(sidecar)
        try:
            f = open(archive, "rb", buffering=0)  # noqa: SIM115 (closed below, after the swap)
        except FileNotFoundError:
            raise SnapshotNotFound(f"snapshot {archive.name} does not exist") from None
        with f:
            restore_stream(f, workspace, expected_sha256=expected, owner=owner, fresh=fresh)

    # --- delete / exists -------------------------------------------------------------------

    async def delete(self, url: str) -> None:
        archive, sidecar = self._paths(url)
        await asyncio.to_thread(self._remove, archive, sidecar)

    def _remove(self, archive: Path, sidecar: Path) -> None:
        sidecar.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
        if self.root.exists():
            fsync_dir(self.root)

    async def exists(self, url: str) -> bool:
        archive, _ = self._paths(url)
        return await asyncio.to_thread(archive.is_file)

    def __repr__(self) -> str:
        return "<LocalSnapshotStore>"


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb", opener=private) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _read_sidecar(sidecar: Path) -> str | None:
    try:
        text = sidecar.read_text("ascii")
    except FileNotFoundError:
        return None  # a crash between rename and recording: the zstd checksum still applies
    digest = text.split(maxsplit=1)[0] if text.strip() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise SnapshotCorrupt(f"snapshot hash file {sidecar.name} is damaged")
    return digest


def _file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
