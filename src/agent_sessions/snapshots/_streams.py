"""Stream adapters between files, hashing, zstd and tarfile.

Each exists for one reason given in its docstring; all stream in ``CHUNK`` pieces, so no
archive is ever held in memory.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from typing import IO, TYPE_CHECKING, Protocol, cast

import zstandard

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "CHUNK",
    "DecompressingPipe",
    "HashingReader",
    "HashingWriter",
    "RawSink",
    "Readable",
    "Writable",
]

CHUNK = 1 << 20
"""I/O granularity: large enough that per-call overhead vanishes, small enough to stream."""


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _BufferWritable(Protocol):
    def write(self, data: memoryview, /) -> object: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class HashingWriter:
    """File-like sink that forwards bytes and keeps their SHA-256 and count."""

    def __init__(self, raw: Writable) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._raw.write(bytes(data) if not isinstance(data, bytes) else data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """zstandard flushes its sink; the real flush happens when the caller closes it."""

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class HashingReader:
    """File-like source that keeps the SHA-256 and count of everything read through it."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, so the digest covers trailing bytes the decoder did not need."""
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class RawSink(io.RawIOBase):
    """Lets ``io.BufferedWriter`` feed the zstd writer (which is not a RawIOBase).

    The buffer is passed on as a view, not copied: zstd consumes it before ``write`` returns.
    """

    def __init__(self, target: _BufferWritable) -> None:
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data)
        self._target.write(view)
        return view.nbytes


class DecompressingPipe:
    """zstd decompression in a worker thread, feeding the extracting thread through a queue.

    zstd (and the SHA-256 of the source, computed by the reader it pulls from) release the GIL,
    so they overlap with extraction, which is Python plus one syscall after another. The queue
    is bounded: at most ``_DEPTH`` chunks are ever held. Chunks are handed over whole
    (:meth:`read_chunk`), so the reader parses them in place instead of copying them again.
    """

    _DEPTH = 8

    def __init__(self, source: Readable) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._eof = False
        self._thread = threading.Thread(
            target=self._produce, args=(source,), name="snapshot-unzstd", daemon=True
        )
        self._thread.start()

    def _produce(self, source: Readable) -> None:
        try:
            dctx = zstandard.ZstdDecompressor()
            with dctx.stream_reader(cast(IO[bytes], source), read_size=CHUNK, closefd=False) as z:
                while chunk := z.read(CHUNK):
                    if not self._put(chunk):
                        return
            self._put(None)
        except BaseException as exc:  # handed to the reading thread, raised there
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read_chunk(self) -> bytes:
        """The next decompressed chunk, ``b""`` at the end; the worker's error is raised here."""
        if self._eof:
            return b""
        item = self._queue.get()
        if item is None or isinstance(item, BaseException):
            self._eof = True
            if item is not None:
                raise item
            return b""
        return item

    def __enter__(self) -> DecompressingPipe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop and join the worker, so the source is ours alone again."""
        self._stop.set()
        self._thread.join()
