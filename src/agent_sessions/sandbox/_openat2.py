"""``openat2(2)`` through ctypes, so host-side opens cannot be steered out of a workspace.

Python has no binding for openat2 (syscall 437 on every architecture since Linux 5.6). With
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`` the kernel refuses, atomically,
any path that leaves the directory or crosses a link: a sandbox swapping a directory for a
symlink while we open cannot win the race (architecture.md, Local sandbox). Where the syscall is
missing we walk the path one component at a time with ``O_NOFOLLOW`` instead, which is equally
strict once ``..`` is rejected lexically (see :func:`split_relative`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from agent_sessions.sandbox.errors import UnsafePath

__all__ = ["open_beneath", "split_relative"]

_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

_MAX_PATH = 4096
_MAX_COMPONENT = 255


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_has_openat2: bool | None = None


def split_relative(path: str) -> list[str]:
    """Components of a workspace-relative path; ``[]`` is the workspace root.

    Refuses absolute paths, ``..``, NUL and over-long names; ``.`` and empty components are
    dropped, so ``./a//b`` is ``["a", "b"]``.
    """
    if not isinstance(path, str):
        raise UnsafePath("path must be a string")
    if "\0" in path:
        raise UnsafePath("path contains NUL")
    if path.startswith("/"):
        raise UnsafePath(f"absolute path not allowed: {path!r}")
    if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH:
        raise UnsafePath("path too long")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise UnsafePath(f"'..' not allowed in path: {path!r}")
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT:
            raise UnsafePath("path component too long")
    return parts


def _openat2(dir_fd: int, rel: str, flags: int, mode: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, _RESOLVE)
    raw = os.fsencode(rel)
    while True:
        fd = _syscall(_SYS_OPENAT2, dir_fd, raw, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err == errno.EAGAIN:  # a concurrent rename raced the lookup; the kernel asks to retry
            continue
        raise OSError(err, os.strerror(err), rel)


def _walk_nofollow(dir_fd: int, parts: list[str], flags: int, mode: int) -> int:
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            # No O_DIRECTORY: with O_NOFOLLOW it turns a symlink into ENOTDIR, not ELOOP.
            nxt = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)  # fmt: skip
            os.close(fd)
            fd = nxt
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), part)

        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)


def open_beneath(dir_fd: int, parts: list[str], flags: int, mode: int = 0o600) -> int:
    """Open ``parts`` (from :func:`split_relative`) beneath ``dir_fd`` without following links.

    Raises ``OSError`` as ``open`` would; a link anywhere on the path gives ``ELOOP`` (or
    ``EXDEV`` for an escape), which callers turn into :class:`UnsafePath`.
    """
    global _has_openat2
    if not parts:
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=dir_fd)
    if _has_openat2 is not False:
        try:
            fd = _openat2(dir_fd, "/".join(parts), flags, mode)
            _has_openat2 = True
            return fd
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
            _has_openat2 = False
    return _walk_nofollow(dir_fd, parts, flags, mode)
