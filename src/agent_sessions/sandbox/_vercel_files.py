"""Host-side helpers of the Vercel provider: ``find -printf`` parsing and tar staging.

Listing and stat run ``find`` in the VM (the SDK has no stat call); snapshots move the
workspace as a plain tar, unpacked on this host with the snapshot store's safe filter.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from agent_sessions.sandbox.base import FileInfo, FileKind
from agent_sessions.snapshots._archive import workspace_filter

__all__ = ["parse_find_output", "tar_directory", "untar_into"]

_KINDS: dict[str, FileKind] = {"f": "file", "d": "dir", "l": "symlink"}


def parse_find_output(output: str, prefix: str) -> list[FileInfo]:
    """Entries printed by ``find -printf '%y %s %m %T@ %P\\0'`` (relative to ``prefix``)."""
    entries = []
    for record in output.split("\0"):
        if not record:
            continue
        kind, size, mode, mtime, name = record.split(" ", 4)
        path = f"{prefix}/{name}" if prefix and name else (name or prefix or ".")
        entries.append(
            FileInfo(path, _KINDS.get(kind, "other"), int(size), int(mode, 8), float(mtime))
        )
    return entries


def untar_into(archive: Path, dest: Path) -> None:
    """Unpack a tar made in the VM, refusing anything that could escape ``dest``.

    FIFOs and device nodes are skipped, as the local snapshot writer skips them: they hold no
    data, and refusing them would make a workspace with a named pipe impossible to hibernate.
    """
    with tarfile.open(archive, mode="r:") as tar:
        tar.extractall(dest, filter=_skip_special_then_check)  # noqa: S202


def _skip_special_then_check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    if member.ischr() or member.isblk() or member.isfifo():
        return None
    return workspace_filter(member, dest, owner=None)


def tar_directory(root: Path, archive: Path) -> None:
    """Pack ``root`` as a plain tar (links stay links; nothing is followed)."""
    with tarfile.open(archive, mode="w:", format=tarfile.GNU_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                info = tar.gettarinfo(path, arcname=str(path.relative_to(root)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if stat.S_ISREG(os.lstat(path).st_mode):
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
