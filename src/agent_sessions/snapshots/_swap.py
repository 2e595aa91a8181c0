"""Crash-safe replacement of a workspace directory, and the fsync calls that make it durable.

A restore builds the new tree in a staging directory *beside* the workspace (same filesystem,
so renames are atomic), then exchanges the two paths with ``renameat2(RENAME_EXCHANGE)``: at
every instant the workspace path names a complete tree, old or new. Where the filesystem lacks
the exchange flag it falls back to two renames, and the next call recovers the one window in
between (workspace missing, old tree parked aside) by moving the old tree back.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_sessions.faults import fault_point

__all__ = [
    "fsync_dir",
    "fsync_file",
    "new_staging_dir",
    "recover_workspace",
    "remove_tree",
    "swap_in",
]

_RENAME_EXCHANGE = 2  # <linux/fs.h>
_AT_FDCWD = -100
_STAGING = ".restore-"
_OLD = ".old-"

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2: Callable[..., int] | None = getattr(_libc, "renameat2", None)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames and unlinks inside ``path`` durable (POSIX needs the directory synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sibling(workspace: Path, marker: str) -> Path:
    return workspace.with_name(f".{workspace.name}{marker}{secrets.token_hex(6)}")


def _siblings(workspace: Path, marker: str) -> list[Path]:
    return sorted(workspace.parent.glob(f".{workspace.name}{marker}*"))


def new_staging_dir(workspace: Path) -> Path:
    """An empty directory beside ``workspace`` to extract into (private until swapped in)."""
    staging = _sibling(workspace, _STAGING)
    staging.mkdir(mode=0o700)
    return staging


def recover_workspace(workspace: Path) -> None:
    """Undo whatever a crashed restore left behind; safe to call at any time.

    Staging directories are always incomplete or superseded, so they go. A parked old tree is
    moved back if the crash hit between the fallback's two renames, else removed.
    """
    for staging in _siblings(workspace, _STAGING):
        remove_tree(staging)
    for old in _siblings(workspace, _OLD):
        if not workspace.exists():
            os.rename(old, workspace)
            fsync_dir(workspace.parent)
        else:
            remove_tree(old)


def swap_in(staging: Path, workspace: Path) -> None:
    """Make ``staging`` the workspace, atomically; the previous tree is then removed."""
    staging.chmod(workspace.stat().st_mode & 0o7777 if workspace.exists() else 0o755)
    if not workspace.exists():
        os.rename(staging, workspace)
        fsync_dir(workspace.parent)
        return
    if _exchange(staging, workspace):
        old = staging  # the path we staged under now holds the previous tree
        fsync_dir(workspace.parent)
    else:
        old = _sibling(workspace, _OLD)
        os.rename(workspace, old)
        fault_point("restore.old-parked")
        os.rename(staging, workspace)
        fsync_dir(workspace.parent)
    fault_point("restore.swapped")
    remove_tree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the kernel or filesystem cannot."""
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def remove_tree(path: Path) -> None:
    """``rm -rf`` that also copes with read-only directories when not running as root."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=_make_writable_and_retry)
        else:
            shutil.rmtree(path, onerror=lambda f, p, e: _make_writable_and_retry(f, p, e[1]))


def _make_writable_and_retry(func: Callable[..., Any], target: str, exc: BaseException) -> None:
    if not isinstance(exc, PermissionError):
        raise exc
    parent = os.path.dirname(target)
    os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IRWXU)
    if os.path.isdir(target) and not os.path.islink(target):
        os.chmod(target, stat.S_IMODE(os.lstat(target).st_mode) | stat.S_IRWXU)
    func(target)
