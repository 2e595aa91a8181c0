"""The workspace as one streamed download: ``.tar.gz``, or ``.zip``.

``tar`` and ``gzip`` exist in every sandbox (the local one has the host's ``/usr``; Vercel's
images have both), ``zip`` not always. So the sandbox always builds a ``.tar.gz``, as the sandbox
user, in a temporary file of the workspace (the local sandbox's ``/tmp`` lives for one command
only), and the service streams it out with the bounded ``read_stream``, deleting it after. A
``.zip`` is converted from that stream on the host, entry by entry in a worker thread (zipfile
writes to a stream that cannot seek with data descriptors), so neither format is ever whole in
the service's memory: what it holds is a few chunks of a bounded queue.

The archive holds what ``tar`` sees as the sandbox user: links stay links (never followed),
hard links are stored as copies in a zip, FIFOs, sockets and devices are left out, and a file
the user made unreadable is skipped (``--ignore-failed-read``). Owners are not recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import secrets
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio

from agent_sessions.exceptions import Conflict, InvalidInput, UpstreamError
from agent_sessions.sandbox import READ_CHUNK, Sandbox
from agent_sessions.workspace.files import EXCLUDED, ByteStream, stream_content

__all__ = ["FORMATS", "ArchiveFormat", "archive"]

log = logging.getLogger(__name__)

ArchiveFormat = Literal["tar.gz", "zip"]


@dataclass(frozen=True)
class _Format:
    media_type: str
    gzip_level: int
    """How hard the sandbox compresses: a zip is recompressed on the host, so its tar is only
    compressed to spare the workspace's disk."""
    tar_options: str


FORMATS: dict[str, _Format] = {
    "tar.gz": _Format("application/gzip", 6, ""),
    "zip": _Format("application/zip", 1, "--hard-dereference"),
}
TEMP_DIR = ".agent-sessions"
"""Where the sandbox writes the archive for the time of one download."""
BUILD_TIMEOUT = 900.0
"""Seconds the sandbox may spend building the archive."""
_STALE_MINUTES = 60
"""A temporary archive older than this was left by a crash: the next build deletes it."""
_QUEUE = 8
"""Zip pieces (of up to :data:`_PIECE` bytes) waiting for the client at most."""
_PIECE = 256 << 10
_SLICE = 1.0
"""Seconds a worker thread waits on the event loop before it checks whether to give up."""

# ``$AS_OUT`` is created before tar starts (retried: a cleanup may remove the directory between
# mkdir and create); tar leaves out every temporary archive, and their directory if it was made
# for this one. Exit 0 and 1 of tar (a file changed while read) give a usable archive; anything
# but 0 of gzip does not (the disk is full).
_BUILD = r"""
[ -L "$AS_DIR" ] && exit 72
own=(); [ -e "$AS_DIR" ] || own=(--exclude="./$AS_DIR")
for _ in 1 2 3; do mkdir -p -- "$AS_DIR" 2>/dev/null && : > "$AS_OUT" && break; done
[ -f "$AS_OUT" ] || exit 70
find "$AS_DIR" -maxdepth 1 -name '.archive-*.tmp' -mmin +STALE -delete 2>/dev/null
tar --create --file=- --numeric-owner --owner=0 --group=0 --ignore-failed-read \
    --warning=no-file-changed --warning=no-file-removed --warning=no-file-ignored \
    --anchored "${own[@]}" --exclude="./$AS_DIR/.archive-*.tmp" --no-anchored EXCLUDES OPTIONS . \
  | gzip -LEVEL > "$AS_OUT"
s=("${PIPESTATUS[@]}")
if [ "${s[0]}" -gt 1 ] || [ "${s[1]}" -ne 0 ]; then rm -f -- "$AS_OUT"; exit 71; fi
stat -c %s -- "$AS_OUT"
"""
_CLEANUP = 'rm -f -- "$AS_OUT"; rmdir -- "$AS_DIR" 2>/dev/null; exit 0'


def _build_script(fmt: _Format, include_all: bool) -> str:
    excludes = "" if include_all else " ".join(f"--exclude={name}" for name in EXCLUDED)
    return (
        _BUILD.replace("STALE", str(_STALE_MINUTES))
        .replace("EXCLUDES", excludes)
        .replace("OPTIONS", fmt.tar_options)
        .replace("LEVEL", str(fmt.gzip_level))
    )


async def archive(sandbox: Sandbox, fmt: str, *, include_all: bool = False) -> ByteStream:
    """The workspace (``.git`` and ``node_modules`` left out unless ``include_all``) in format
    ``fmt``, ready to stream; its :meth:`~ByteStream.aclose` deletes the temporary archive."""
    spec = FORMATS.get(fmt)
    if spec is None:
        raise InvalidInput(f"unknown archive format {fmt!r}: use one of {', '.join(FORMATS)}")
    env = {"AS_DIR": TEMP_DIR, "AS_OUT": f"{TEMP_DIR}/.archive-{secrets.token_hex(16)}.tmp"}

    async def cleanup() -> None:
        try:
            await sandbox.exec(_CLEANUP, env=env, timeout=60)
        except Exception:  # the sandbox went away meanwhile: its workspace went with it
            log.warning("could not delete the temporary archive %s", env["AS_OUT"], exc_info=True)

    built = await sandbox.exec(
        _build_script(spec, include_all), env=env, timeout=BUILD_TIMEOUT, max_output=4096
    )
    if built.exit_code in (70, 72):
        raise Conflict(
            f"cannot write a temporary archive under {TEMP_DIR}/ in the workspace (is it a file "
            "or a symlink?): remove it to download"
        )
    if built.timed_out or built.exit_code != 0:
        await cleanup()
        if "No space left" in built.stderr or "Disk quota" in built.stderr:
            raise Conflict("no space left in the workspace to build the archive")
        raise UpstreamError(
            f"building the archive failed: {built.stderr[-300:]}", timeout=built.timed_out
        )
    try:
        _, tar_gz = await stream_content(sandbox, env["AS_OUT"])
    except BaseException:
        await cleanup()
        raise
    if fmt == "tar.gz":

        async def close_tar() -> None:
            await tar_gz.aclose()
            await cleanup()

        return ByteStream(tar_gz.chunks, tar_gz.size, close_tar)

    zipped = _zip_from_tar_gz(tar_gz.chunks)

    async def close_zip() -> None:
        await zipped.aclose()  # ends the worker thread before its source is closed
        await tar_gz.aclose()
        await cleanup()

    return ByteStream(zipped, None, close_zip)


# --- tar.gz → zip, on the host ----------------------------------------------------------------

_T = TypeVar("_T")


class _Stopped(Exception):
    """The consumer went away (or the loop closed): the worker thread ends."""


class _Bridge:
    """What the worker thread calls on the event loop, giving up when told to stop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        self.loop, self.stop = loop, stop

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self.stop.is_set() or self.loop.is_closed():
            coro.close()
            raise _Stopped
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        while True:
            try:
                return future.result(timeout=_SLICE)
            except concurrent.futures.TimeoutError:
                if self.stop.is_set() or self.loop.is_closed():
                    future.cancel()
                    raise _Stopped from None


class _Reader(io.RawIOBase):
    """The async chunks as a blocking, read-only file for :mod:`tarfile`."""

    def __init__(self, chunks: AsyncIterator[bytes], bridge: _Bridge) -> None:
        self._chunks, self._bridge = chunks, bridge
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buf:
            chunk = self._bridge.call(_next(self._chunks))
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    return await anext(chunks, None)


class _Writer:
    """A write-only, unseekable file whose bytes go to the queue in pieces of ~:data:`_PIECE`
    (a full queue blocks the thread: the client's pace is the converter's)."""

    def __init__(self, queue: asyncio.Queue[bytes | None], bridge: _Bridge) -> None:
        self._queue, self._bridge = queue, bridge
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= _PIECE:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            piece, self._pending = bytes(self._pending), bytearray()
            self._bridge.call(self._queue.put(piece))


def _zip_name(name: str) -> str:
    """A tar member's name as a zip entry's: relative, ``/``-separated, valid UTF-8."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _date_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """Zip's MS-DOS time spans 1980-2107; times outside are clamped into it."""
    y, mo, d, h, mi, s = time.gmtime(max(mtime, 315532800))[:6]
    return (y, mo, d, h, mi, s) if y <= 2107 else (2107, 12, 31, 23, 59, 58)


def _tar_to_zip(source: _Reader, sink: _Writer) -> None:
    with (
        tarfile.open(fileobj=source, mode="r|gz") as tar,
        zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as out,  # type: ignore[call-overload]
    ):
        for member in tar:
            name = _zip_name(member.name)
            if not name:
                continue
            mode = member.mode & 0o7777
            if member.isdir():
                info = zipfile.ZipInfo(f"{name}/", _date_time(member.mtime))
                info.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10  # MS-DOS directory
                out.writestr(info, b"")
            elif member.isreg():
                info = zipfile.ZipInfo(name, _date_time(member.mtime))
                info.external_attr = (stat.S_IFREG | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = member.size
                data = tar.extractfile(member)
                assert data is not None
                with out.open(info, "w", force_zip64=member.size >= zipfile.ZIP64_LIMIT) as f:
                    shutil.copyfileobj(data, f, READ_CHUNK)
            elif member.issym():  # as Info-ZIP stores one: the mode says link, the data target
                info = zipfile.ZipInfo(name, _date_time(member.mtime))
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                out.writestr(info, member.linkname)
    sink.flush()


async def _zip_from_tar_gz(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The zip of a ``.tar.gz`` stream, converted in a worker thread as the client reads."""
    stop = threading.Event()
    bridge = _Bridge(asyncio.get_running_loop(), stop)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUE)

    def convert() -> None:
        try:
            _tar_to_zip(_Reader(chunks, bridge), _Writer(queue, bridge))
        except _Stopped:
            return
        finally:
            with contextlib.suppress(_Stopped):
                bridge.call(queue.put(None))  # the end, or the error the worker raises

    worker = asyncio.ensure_future(asyncio.to_thread(convert))
    try:
        while (piece := await queue.get()) is not None:
            yield piece
        await worker  # the converter's error, if it failed: the response ends cut short
    finally:
        stop.set()
        while not queue.empty():  # frees a put the worker waits on, so it sees ``stop`` now
            queue.get_nowait()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([worker])
        if not worker.cancelled() and worker.exception() is not None:
            log.warning("zip conversion failed", exc_info=worker.exception())
