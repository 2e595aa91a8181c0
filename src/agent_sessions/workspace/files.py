"""A session's files for the API: the tree, one file's content (whole or streamed), uploads.

Everything goes through the provider interface (ADR 13), so it works alike on local and Vercel
sandboxes. The tree is ONE ``exec`` of ``find`` (NUL-separated, capped in the sandbox); content
and uploads use the provider's file calls, which never follow a symlink on the host side
(``openat2`` with ``RESOLVE_NO_SYMLINKS`` locally, ``find``/``stat`` in the VM on Vercel): a
link the agent planted is refused as an unsafe path, never read through. Nothing here holds
more than one bounded piece of a file in the service's memory: a whole file only up to the
caller's limit, a download chunk by chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from agent_sessions.exceptions import InvalidInput, TooLarge, UpstreamError
from agent_sessions.sandbox import (
    FileInfo,
    FileTooLarge,
    PathConflict,
    PathNotFound,
    Sandbox,
    UnsafePath,
)
from agent_sessions.sandbox._openat2 import split_relative

__all__ = [
    "BINARY_SNIFF",
    "EXCLUDED",
    "TREE_LIMIT",
    "ByteStream",
    "Content",
    "Entry",
    "EntryType",
    "NotAFile",
    "Tree",
    "UploadTooLarge",
    "clean_path",
    "entry_of",
    "read_content",
    "read_limited",
    "stream_content",
    "text_of",
    "tree",
    "upload",
]

TREE_LIMIT = 5000
"""Entries a tree answers at most (then ``truncated``)."""
TREE_MAX_BYTES = 4 << 20
"""Bytes of ``find`` output kept at most (5,000 paths of 800 bytes): bounds what the service
holds for a tree of pathological names; past it the tree is ``truncated`` earlier."""
EXCLUDED = (".git", "node_modules")
"""Names left out of the tree and the archive, at any depth, unless asked for."""
BINARY_SNIFF = 8192
"""A NUL in this many first bytes makes a file binary (as ``grep -I`` and git judge it)."""

EntryType = Literal["file", "directory", "symlink", "other"]
_FIND_TYPES: dict[str, EntryType] = {"f": "file", "d": "directory", "l": "symlink"}
_KIND_TYPES: dict[str, EntryType] = {"file": "file", "dir": "directory", "symlink": "symlink"}

# Exit codes of the tree script's checks of ``path``.
_LINK, _MISSING, _NOT_DIR = 65, 66, 67


class NotAFile(InvalidInput):
    """The path names a directory, a link or a special file where a regular file is wanted."""


class UploadTooLarge(TooLarge):
    """An upload above ``AGENT_SESSIONS_FILES_MAX_UPLOAD_BYTES``."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"upload is larger than {limit} bytes (AGENT_SESSIONS_FILES_MAX_UPLOAD_BYTES)"
        )


@dataclass(frozen=True)
class Entry:
    """One workspace entry, as ``lstat`` sees it (a link is itself, never its target)."""

    path: str
    type: EntryType
    size: int
    """Bytes of a file; the target's length for a link; 0 for a directory."""


@dataclass(frozen=True)
class Tree:
    path: str
    """The listed directory, workspace-relative (``""`` for the root)."""
    entries: list[Entry]
    """Sorted by path; directories included."""
    truncated: bool


@dataclass(frozen=True)
class Content:
    path: str
    data: bytes
    text: str | None
    """The content as text; None for a binary file (see :func:`text_of`)."""


def clean_path(path: str | None, *, root: bool = False) -> str:
    """The normalised workspace-relative form of ``path`` (``./a//b`` → ``a/b``).

    :class:`UnsafePath` (400) for an absolute path, any ``..``, NUL or an over-long name, and
    for an empty path unless ``root`` allows the workspace root (``""``).
    """
    parts = split_relative(path or "")
    if not parts and not root:
        raise UnsafePath("path is required (a file path relative to the workspace root)")
    return "/".join(parts)


def entry_of(info: FileInfo) -> Entry:
    kind = _KIND_TYPES.get(info.kind, "other")
    return Entry(info.path, kind, 0 if kind == "directory" else info.size)


def text_of(data: bytes) -> str | None:
    """The file as text, or None when it is binary: a NUL in its first :data:`BINARY_SNIFF`
    bytes (as ``grep -I`` and git judge it), or bytes that are not UTF-8 anywhere (JSON could
    not carry them as text)."""
    if b"\0" in data[:BINARY_SNIFF]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- tree --------------------------------------------------------------------------------------

# ``AS_PATH`` is checked one component at a time: a link anywhere on it is refused, as the
# provider file calls refuse one (the listing itself runs as the sandbox user, in its view).
# ``find -P`` (the default) never follows a link below the start. Pruned names are neither
# printed nor entered. ``%P`` is raw bytes, NUL-ended: no quoting, spaces and newlines survive.
_TREE = r"""
p=$AS_PATH
if [ -n "$p" ]; then
  cur=. rest=$p
  while :; do
    part=${rest%%/*}
    cur=$cur/$part
    [ -L "$cur" ] && exit 65
    [ "$part" = "$rest" ] && break
    rest=${rest#*/}
  done
  [ -e "$cur" ] || exit 66
  [ -d "$cur" ] || exit 67
  cd -- "$p" || exit 66
fi
find . -mindepth 1 PRUNE -printf '%y %s %P\0' 2>/dev/null \
  | head -z -n "$AS_COUNT" | head -c "$AS_BYTES"
"""


def _tree_script(include_all: bool) -> str:
    if include_all:
        prune = ""
    else:
        names = " -o ".join(f"-name {name}" for name in EXCLUDED)
        prune = rf"\( {names} \) -prune -o"
    return _TREE.replace("PRUNE", prune)


async def tree(
    sandbox: Sandbox, path: str = "", *, include_all: bool = False, limit: int = TREE_LIMIT
) -> Tree:
    """The entries under ``path`` (the workspace root by default), directories included, at
    most ``limit`` of them; ``.git`` and ``node_modules`` left out unless ``include_all``.

    One ``exec``; names that are not UTF-8 come with U+FFFD in place of their bad bytes (JSON
    cannot carry them), so such an entry cannot be fetched by the path it is listed under.
    """
    root = clean_path(path, root=True)
    env = {"AS_PATH": root, "AS_COUNT": str(limit + 1), "AS_BYTES": str(TREE_MAX_BYTES)}
    result = await sandbox.exec(_tree_script(include_all), env=env, max_output=TREE_MAX_BYTES)
    if result.exit_code == _LINK:
        raise UnsafePath(f"path crosses a symlink: {root!r}")
    if result.exit_code == _MISSING:
        raise PathNotFound(f"no such directory in the workspace: {root!r}")
    if result.exit_code == _NOT_DIR:
        raise InvalidInput(f"not a directory: {root!r}")
    if result.timed_out or result.exit_code != 0:
        raise UpstreamError(
            f"listing the workspace failed: {result.stderr[:200]}", timeout=result.timed_out
        )
    # A complete listing ends with NUL, so its last piece is empty; a piece after the last NUL
    # is a record cut by the byte cap, which may also have fallen just after a NUL. (The
    # ``max_output`` cap never cuts: it counts characters, at most as many as bytes.)
    records = result.stdout.split("\0")
    truncated = records.pop() != "" or len(result.stdout.encode()) >= TREE_MAX_BYTES
    if len(records) > limit:
        records, truncated = records[:limit], True
    prefix = f"{root}/" if root else ""
    entries = []
    for record in records:
        kind, size, name = record.split(" ", 2)
        kind_type = _FIND_TYPES.get(kind, "other")
        entries.append(
            Entry(prefix + name, kind_type, 0 if kind_type == "directory" else int(size))
        )
    entries.sort(key=lambda e: e.path)
    return Tree(root, entries, truncated)


# --- content -----------------------------------------------------------------------------------


async def _regular_file(sandbox: Sandbox, path: str) -> FileInfo:
    """``lstat`` of ``path``, refused unless a regular file: a link is not read through."""
    info = await sandbox.stat(path)
    if info.kind == "dir":
        raise NotAFile(f"{path} is a directory (list it with GET …/files?path=)")
    if info.kind == "symlink":
        raise UnsafePath(f"{path} is a symlink: links are not followed")
    if info.kind != "file":
        raise NotAFile(f"{path} is not a regular file")
    return info


async def read_content(sandbox: Sandbox, path: str, max_bytes: int) -> Content:
    """The whole file, refused (413) above ``max_bytes`` before anything is read."""
    rel = clean_path(path)
    info = await _regular_file(sandbox, rel)
    if info.size > max_bytes:
        raise FileTooLarge(rel, max_bytes, info.size)
    data = await sandbox.read_file(rel, max_bytes=max_bytes)
    return Content(rel, data, text_of(data))


class ByteStream:
    """Bytes to send chunk by chunk, their number when known, and what to do once sent or
    abandoned (:meth:`aclose`: close the source, delete a temporary)."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        size: int | None,
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.chunks, self.size, self._close = chunks, size, close
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._close()


async def _prefixed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def stream_content(sandbox: Sandbox, path: str) -> tuple[str, ByteStream]:
    """The file's bytes as a stream of :data:`~agent_sessions.sandbox.READ_CHUNK` pieces, for a
    file of any size; its first chunk is read here, so that a missing file or a link is an
    error before any response starts. At most the size seen first is sent (it is the
    ``Content-Length``); a file that shrinks meanwhile ends the response early."""
    rel = clean_path(path)
    info = await _regular_file(sandbox, rel)
    source = sandbox.read_stream(rel, length=info.size)
    try:
        first = await anext(source, b"")
    except BaseException:
        await source.aclose()
        raise
    body = _prefixed(first, source)

    async def close() -> None:
        await body.aclose()
        await source.aclose()

    return rel, ByteStream(body, info.size, close)


# --- upload ------------------------------------------------------------------------------------


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """A request body, refused (:class:`UploadTooLarge`) as soon as it passes ``limit``: no more
    than ``limit`` plus one chunk is ever held."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


async def upload(sandbox: Sandbox, path: str, data: bytes) -> Entry:
    """Create or replace a regular file (parents created); an existing file keeps its mode.

    409 when ``path`` is a directory (or its parent a file); a link at ``path`` is replaced by
    the file, never written through (the provider renames over it); a link on the way is 400.
    """
    rel = clean_path(path)
    mode = 0o644
    with contextlib.suppress(PathNotFound):
        info = await sandbox.stat(rel)
        if info.kind == "dir":
            raise PathConflict(f"{rel} is a directory")
        if info.kind == "file":
            mode = info.mode
    await sandbox.write_file(rel, data, mode=mode)
    return entry_of(await sandbox.stat(rel))
