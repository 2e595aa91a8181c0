"""Host-side helpers of the Vercel provider: ``find -printf`` parsing and tar staging.

Listing and stat run ``find`` in the VM (the SDK has no stat call); snapshots move the
workspace as a plain tar, unpacked on this host with tarfile under :func:`_workspace_filter`
(the snapshot store's own extractor, ``snapshots._untar``, applies the same rules).
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from agent_sessions.sandbox.base import FileInfo, FileKind

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
    return _workspace_filter(member, dest)


def _workspace_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``data`` filter for safety, with two deliberate differences.

    * Modes come back as they were (minus setuid, setgid, sticky): ``data`` drops directory
      modes and group/other write bits, harmless inside a workspace but part of a round trip.
    * A symlink whose *target* is absolute or leaves the workspace is kept as an inert link
      instead of failing the whole restore: workspaces are full of them (a Python venv's
      ``bin/python -> /usr/bin/python3``), and inside the sandbox they resolve in the sandbox's
      own filesystem. Still safe on the host: the link's own path is checked, every later
      member's path is resolved through the links already on disk (so nothing is ever written
      through one), hard links stay strictly inside, and host-side file access never follows
      links.
    """
    original_mode, linkname = member.mode, member.linkname
    if member.issym():
        probe = member.replace(linkname=".", deep=False)  # check everything but the target
        safe = tarfile.data_filter(probe, dest).replace(linkname=linkname, deep=False)
    else:
        safe = tarfile.data_filter(member, dest)
    if safe.isreg() or safe.isdir():
        safe = safe.replace(mode=original_mode & 0o777, deep=False)
    return safe


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
