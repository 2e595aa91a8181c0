"""Workspace ⇄ tar + zstd streams, hashed on the way through.

Both directions stream: the archive is never held in memory, only ``CHUNK``-sized buffers.
Writing walks the workspace through directory file descriptors with ``O_NOFOLLOW``, so a symlink
the sandbox planted (even one swapped in mid-walk) is archived as a link and never followed out
of the workspace; headers come from the fast :mod:`._tarwriter`, compression from zstd's own
worker threads. Reading decompresses in a worker thread and extracts with :mod:`._untar`,
which creates every entry through directory fds without following links (``..`` paths, links
that would be written through or hard-linked outside, and device nodes are refused; checklist
§0.6, §1 test 16).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO, cast

import zstandard

from agent_sessions.snapshots._streams import (
    CHUNK,
    DecompressingPipe,
    RawSink,
    Readable,
    Writable,
)
from agent_sessions.snapshots._tarwriter import TarWriter
from agent_sessions.snapshots._untar import extract_tar
from agent_sessions.snapshots.errors import SnapshotCorrupt

__all__ = ["ZSTD_LEVEL", "extract_archive", "write_archive"]

ZSTD_LEVEL = 3
"""The CLI's default level; the best speed/ratio trade for source trees."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# O_NONBLOCK: opening a FIFO planted where a file was must not hang the service.


def write_archive(workspace: Path, out: Writable) -> None:
    """Write ``workspace`` as a zstd-compressed tar stream into ``out``.

    Regular files, directories, symlinks (as links) and hard links inside the tree are kept
    with their modes and mtimes; sockets, FIFOs and devices are skipped (they cannot be
    restored safely and carry no data). Ownership is recorded but not trusted on restore.
    """
    # zstd's own workers compress in parallel; python-zstandard holds the GIL while it hands
    # them input, so a separate compressing thread of ours would gain nothing (measured).
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
    root = os.open(workspace, _DIR_FLAGS)
    try:
        with cctx.stream_writer(cast(IO[bytes], out), closefd=False, write_size=CHUNK) as zout:
            # Headers and small files are a few hundred bytes each: batch them before zstd.
            buffered = io.BufferedWriter(RawSink(zout), buffer_size=CHUNK)
            tar = TarWriter(buffered.write)
            _add_tree(tar, root, "")
            tar.close()
            buffered.flush()
    finally:
        os.close(root)


def _add_tree(tar: TarWriter, dir_fd: int, prefix: str) -> None:
    seen: dict[tuple[int, int], str] = {}  # (dev, inode) -> first name, to keep hard links
    for name, st, fd, linkname in _walk(dir_fd, prefix):
        # mtime as an integer: a float would need a PAX header per member.
        add = partial(
            tar.add,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime=int(st.st_mtime),
        )
        if fd is None:
            if linkname is None:
                add(name + "/", tarfile.DIRTYPE)
            else:
                add(name, tarfile.SYMTYPE, linkname=linkname)
            continue
        try:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen:
                add(name, tarfile.LNKTYPE, linkname=seen[key])
                continue
            if st.st_nlink > 1:
                seen[key] = name
            add(name, tarfile.REGTYPE, size=st.st_size, fd=fd, allocated=st.st_blocks * 512)
        finally:
            os.close(fd)


_Entry = tuple[str, os.stat_result, int | None, str | None]


def _walk(dir_fd: int, prefix: str) -> Iterator[_Entry]:
    """Yield ``(archive name, stat, fd if a regular file, target if a symlink)``, sorted.

    Every step is relative to an already-open directory fd with ``O_NOFOLLOW``: a directory
    swapped for a symlink mid-walk makes the open fail instead of leading outside.
    """
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = f"{prefix}/{entry.name}" if prefix else entry.name
        # The type comes from the directory entry (no lstat); the fstat after opening is what
        # counts for a file.
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.name, _FILE_FLAGS, dir_fd=dir_fd)
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):  # swapped between listing and open
                os.close(fd)
                continue
            yield name, fst, fd, None
        elif entry.is_symlink():
            st = entry.stat(follow_symlinks=False)
            yield name, st, None, os.readlink(entry.name, dir_fd=dir_fd)
        elif entry.is_dir(follow_symlinks=False):
            sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                yield name, os.fstat(sub), None, None
                yield from _walk(sub, name)
            finally:
                os.close(sub)


def extract_archive(source: Readable, dest: Path, *, owner: tuple[int, int] | None = None) -> None:
    """Extract a zstd tar stream into the existing empty directory ``dest``.

    ``owner`` (uid, gid) is applied to every member when running as root, so a workspace comes
    back owned by its sandbox's host uid; otherwise files belong to the caller.
    """
    chown = owner if owner is not None and os.geteuid() == 0 else None
    root = os.open(dest, _DIR_FLAGS)
    try:
        with DecompressingPipe(source) as pipe:
            extract_tar(pipe.read_chunk, root, owner=chown)
            # Read up to the end of the frame: zstd checks its content checksum there.
            while pipe.read_chunk():
                pass
    except zstandard.ZstdError as exc:
        raise SnapshotCorrupt(f"snapshot archive is damaged: {exc}") from exc
    finally:
        os.close(root)
