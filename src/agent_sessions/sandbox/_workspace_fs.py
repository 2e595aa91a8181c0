"""Host-side file operations on a workspace that never leave it.

The service runs these as (possibly) root on a tree the sandbox controls, so every open goes
through :func:`open_beneath` relative to a descriptor of the workspace root, with
``O_NOFOLLOW`` on the last component and ``O_NONBLOCK`` so a FIFO planted by the sandbox cannot
hang a read. New files and directories are handed to the sandbox's host uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

from agent_sessions.sandbox._openat2 import open_beneath, split_relative
from agent_sessions.sandbox.base import (
    DEFAULT_MAX_READ,
    READ_CHUNK,
    FileInfo,
    FileKind,
    check_range,
)
from agent_sessions.sandbox.errors import (
    FileTooLarge,
    PathConflict,
    PathNotFound,
    SandboxNotFound,
    UnsafePath,
    WorkspaceFull,
)

__all__ = ["WorkspaceFS", "chown_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# No O_DIRECTORY when opening a directory the sandbox controls: with it, a symlink in last
# position gives ENOTDIR (indistinguishable from a file) instead of ELOOP. O_NONBLOCK keeps a
# FIFO from blocking the open; the type is checked on the descriptor.
_SUBDIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def _kind(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _info(path: str, st: os.stat_result) -> FileInfo:
    return FileInfo(
        path=path or ".",
        kind=_kind(st.st_mode),
        size=st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        mtime=st.st_mtime,
    )


@contextlib.contextmanager
def _translate(path: str) -> Iterator[None]:
    """Map ``OSError`` to the sandbox error tree (links and escapes are :class:`UnsafePath`)."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EXDEV):
            raise UnsafePath(f"path crosses a symlink or leaves the workspace: {path!r}") from None
        if err.errno == errno.ENOENT:
            raise PathNotFound(f"no such file or directory: {path!r}") from None
        if err.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY):
            raise PathConflict(f"{os.strerror(err.errno)}: {path!r}") from None
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WorkspaceFull(
                f"no space left writing {path!r} (the workspace's disk limit, or the host's "
                "disk): delete files first"
            ) from None
        raise


def _open_dir(dir_fd: int, parts: list[str]) -> int:
    fd = open_beneath(dir_fd, parts, _SUBDIR_FLAGS)
    if not parts or stat.S_ISDIR(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    raise NotADirectoryError(errno.ENOTDIR, "Not a directory")


class WorkspaceFS:
    """Blocking file operations beneath ``root``; call them from a worker thread."""

    def __init__(self, root: Path, owner: tuple[int, int] | None) -> None:
        self.root = root
        self.owner = owner
        """Host ``(uid, gid)`` new entries get; None when the service is not root."""

    @contextlib.contextmanager
    def _root_fd(self) -> Iterator[int]:
        try:
            fd = os.open(self.root, _DIR_FLAGS | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SandboxNotFound("the sandbox's workspace does not exist") from None
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _dir(self, parts: list[str], path: str, *, create: bool = False) -> Iterator[int]:
        with self._root_fd() as root, _translate(path):
            fd = self._makedirs(root, parts) if create else _open_dir(root, parts)
            try:
                yield fd
            finally:
                os.close(fd)

    def _makedirs(self, root: int, parts: list[str]) -> int:
        fd = os.dup(root)
        try:
            for part in parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if self.owner:
                        os.chown(part, *self.owner, dir_fd=fd, follow_symlinks=False)
                nxt = _open_dir(fd, [part])
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def open_file(self, path: str) -> int:
        """A descriptor of the regular file at ``path`` (the caller closes it)."""
        parts = split_relative(path)
        with self._root_fd() as root, _translate(path):
            fd = open_beneath(root, parts, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PathConflict(f"not a regular file: {path!r}")
        return fd

    def read(self, path: str, max_bytes: int) -> bytes:
        """The whole file, refused before reading if its size is over ``max_bytes``, and while
        reading if it grew past it (never more than ``max_bytes + 1`` bytes are read)."""
        fd = self.open_file(path)
        try:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                raise FileTooLarge(path, max_bytes, size)
            data = bytearray()
            while chunk := os.read(fd, min(READ_CHUNK, max_bytes + 1 - len(data))):
                data += chunk
                if len(data) > max_bytes:
                    raise FileTooLarge(path, max_bytes)
            return bytes(data)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes, mode: int) -> None:
        parts = split_relative(path)
        if not parts:
            raise PathConflict("cannot write the workspace root")
        name = parts[-1]
        with self._dir(parts[:-1], path, create=True) as parent, _translate(path):
            tmp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600, dir_fd=parent)
            try:
                if self.owner:
                    os.fchown(fd, *self.owner)
                os.fchmod(fd, mode & 0o777)  # never setuid/setgid/sticky from the API
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.close(fd)
                fd = -1
                # Atomic replace; a symlink at ``name`` is replaced, never followed.
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
                raise

    def list(self, path: str) -> list[FileInfo]:
        parts = split_relative(path)
        prefix = "/".join(parts)
        with self._dir(parts, path) as fd, _translate(path):
            out = []
            with os.scandir(fd) as it:
                for entry in it:
                    rel = f"{prefix}/{entry.name}" if prefix else entry.name
                    out.append(_info(rel, entry.stat(follow_symlinks=False)))
        return sorted(out, key=lambda i: i.path)

    def stat(self, path: str) -> FileInfo:
        parts = split_relative(path)
        if not parts:
            with self._root_fd() as root:
                return _info("", os.fstat(root))
        with self._dir(parts[:-1], path) as parent, _translate(path):
            return _info("/".join(parts), os.stat(parts[-1], dir_fd=parent, follow_symlinks=False))

    def remove(self, path: str) -> None:
        parts = split_relative(path)
        if not parts:
            raise PathConflict("cannot remove the workspace root")
        with self._dir(parts[:-1], path) as parent, _translate(path):
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                # rmtree with dir_fd uses the fd-based walk that is safe against symlink races.
                shutil.rmtree(parts[-1], dir_fd=parent)
            else:
                os.unlink(parts[-1], dir_fd=parent)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give a whole tree to ``uid:gid`` without following any symlink (after a restore)."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)


async def _open_in_thread(fs: WorkspaceFS, path: str) -> int:
    """:meth:`WorkspaceFS.open_file` in a worker thread; if the caller is cancelled meanwhile,
    the descriptor the thread still returns is closed, not leaked."""
    opening = asyncio.ensure_future(asyncio.to_thread(fs.open_file, path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() else os.close(done.result())
        )
        raise


class HostFileOps:
    """The file operations of :class:`~agent_sessions.sandbox.base.Sandbox` for providers whose
    workspace is a host directory: each runs :class:`WorkspaceFS` in a worker thread."""

    fs: WorkspaceFS

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_READ) -> bytes:
        return await asyncio.to_thread(self.fs.read, path, max_bytes)

    async def read_stream(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        check_range(offset, length)
        fd = await _open_in_thread(self.fs, path)
        try:
            left = length
            while left is None or left > 0:
                want = READ_CHUNK if left is None else min(READ_CHUNK, left)
                chunk = await asyncio.to_thread(os.pread, fd, want, offset)
                if not chunk:
                    return
                offset += len(chunk)
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        await asyncio.to_thread(self.fs.write, path, bytes(data), mode)

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        return await asyncio.to_thread(self.fs.list, path)

    async def stat(self, path: str) -> FileInfo:
        return await asyncio.to_thread(self.fs.stat, path)

    async def remove(self, path: str) -> None:
        await asyncio.to_thread(self.fs.remove, path)
