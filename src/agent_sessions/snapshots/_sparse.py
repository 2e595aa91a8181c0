"""Holes, both ways: GNU sparse members in the archive, and no zeros written on restore.

A file made with ``truncate -s 1G`` takes no disk. Archived as plain data it streams a gigabyte
of zeros through zstd, and restored with plain writes it takes a real gigabyte (issue 14: three
such files, a 100 KB snapshot, 3 GiB after a resume). So:

* **Writing**, a file with fewer blocks allocated than its size is asked where its data is
  (``SEEK_DATA``/``SEEK_HOLE``) and archived as a GNU sparse member (type ``S``, what
  ``tar --sparse`` writes; GNU tar, bsdtar and Python's tarfile read it): the map of its data
  extents in the header (and extension blocks), then only their bytes. The map is bounded
  (:data:`MAX_EXTENTS`): a file with more holes keeps the larger ones in the map and sends the
  smaller ones as zeros, which the next point turns back into holes.
* **Restoring**, data is written with ``pwrite`` at its offset and a run of a block or more of
  zeros is never written: it stays a hole, and ``ftruncate`` sets the size at the end. This
  also brings back sparse the archives of older versions, which hold the zeros themselves.

An archive with sparse members is refused by versions before this one (``S`` was an unknown
type to them), clearly and without touching the workspace.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable
from typing import NamedTuple

from agent_sessions.snapshots.errors import SnapshotCorrupt

__all__ = [
    "BLOCK",
    "MAX_EXTENTS",
    "HoleWriter",
    "SparseMap",
    "check_sparse_map",
    "data_extents",
    "read_sparse_map",
    "sparse_headers",
]

BLOCK = 4096
"""The filesystem block: a run of zeros this long is worth a hole."""

MAX_EXTENTS = 1 << 14
"""Map entries one member may have (~400 KB of headers, held in memory by the reader)."""

Extents = list[tuple[int, int]]
"""``(offset, length)`` of each data extent, in order, not overlapping."""

_HEADER_SLOTS, _EXTENSION_SLOTS, _SLOT = 4, 21, 24
_MAP, _EXTENDED, _REALSIZE = 386, 482, 483  # offsets in the GNU header
_MAX_SIZE = 1 << 62  # beyond any filesystem's file size; os.ftruncate overflows past 2**63


# --- writing ----------------------------------------------------------------------------------


def data_extents(fd: int, size: int) -> Extents | None:
    """The data extents of the regular file open as ``fd``, or ``None`` when it has no hole
    (or the filesystem cannot tell). Leaves the file offset at 0."""
    extents: list[list[int]] = []
    min_hole = 1  # grows when the map would exceed MAX_EXTENTS (with room for its end entry)
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    return None
                break  # nothing but a hole from ``pos`` on
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if extents and start - extents[-1][1] < min_hole:
                extents[-1][1] = end
            else:
                extents.append([start, end])
            if len(extents) >= MAX_EXTENTS:
                min_hole = max(min_hole, BLOCK) * 4
                extents = _coalesce(extents, min_hole)
            pos = end
    except OSError:
        return None  # the file changed under us: the plain copy reports it
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    if extents == [[0, size]]:
        return None
    return [(start, end - start) for start, end in extents]


def _coalesce(extents: list[list[int]], min_hole: int) -> list[list[int]]:
    merged = [extents[0]]
    for start, end in extents[1:]:
        if start - merged[-1][1] < min_hole:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return merged


def sparse_headers(header: bytes, extents: Extents, realsize: int) -> bytes:
    """``header`` (a GNU header of type ``S``, possibly after its long-name blocks) with the
    map filled in, followed by the extension blocks the rest of the map needs.

    As GNU tar does, the map ends with ``(realsize, 0)``: that entry is how GNU tar learns the
    size of a file ending in a hole.
    """
    entries = [*extents, (realsize, 0)]
    head, rest = entries[:_HEADER_SLOTS], entries[_HEADER_SLOTS:]
    block = bytearray(header[-tarfile.BLOCKSIZE :])
    block[_MAP:_EXTENDED] = _slots(head, _HEADER_SLOTS)
    block[_EXTENDED] = 1 if rest else 0
    block[_REALSIZE : _REALSIZE + 12] = _number(realsize)
    checksum = sum(block[:148]) + 8 * 0x20 + sum(block[156:])  # its own field as spaces
    block[148:155] = b"%06o\0" % checksum
    out = [header[: -tarfile.BLOCKSIZE], bytes(block)]
    for i in range(0, len(rest), _EXTENSION_SLOTS):
        extension = bytearray(tarfile.BLOCKSIZE)
        extension[: _EXTENSION_SLOTS * _SLOT] = _slots(
            rest[i : i + _EXTENSION_SLOTS], _EXTENSION_SLOTS
        )
        extension[_EXTENSION_SLOTS * _SLOT] = 1 if i + _EXTENSION_SLOTS < len(rest) else 0
        out.append(bytes(extension))
    return b"".join(out)


def _slots(entries: Extents, count: int) -> bytes:
    data = b"".join(_number(offset) + _number(length) for offset, length in entries)
    return data.ljust(count * _SLOT, b"\0")


def _number(value: int) -> bytes:
    """A 12-byte field: octal, or base-256 from 8 GiB on (as GNU tar and tarfile write it)."""
    if value < 8**11:
        return b"%011o\0" % value
    return b"\x80" + value.to_bytes(11, "big")


def _parse_number(field: bytes) -> int:
    """The inverse of :func:`_number`; a negative base-256 number comes back negative."""
    if field[0] in (0x80, 0xFF):
        return int.from_bytes(field[1:], "big", signed=False) - (
            256 ** (len(field) - 1) if field[0] == 0xFF else 0
        )
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise SnapshotCorrupt("snapshot archive is damaged: bad sparse map") from None


# --- reading ----------------------------------------------------------------------------------


class SparseMap(NamedTuple):
    extents: Extents
    """Where the member's data goes, in the order it is stored (empty extents left out)."""
    realsize: int


def read_sparse_map(header: bytes, next_block: Callable[[], bytes]) -> tuple[Extents, int]:
    """The raw map of a GNU sparse header: its entries, then those of the extension blocks
    that follow it (read with ``next_block``), and the file's real size. Checked by
    :func:`check_sparse_map` once the member's name and data size are known."""
    entries, more = _parse_slots(header[_MAP:_EXTENDED], header[_EXTENDED])
    realsize = _parse_number(header[_REALSIZE : _REALSIZE + 12])
    while more:
        if len(entries) > MAX_EXTENTS:
            raise SnapshotCorrupt("snapshot archive is damaged: sparse map too long")
        block = next_block()
        found, more = _parse_slots(block[: _EXTENSION_SLOTS * _SLOT], block[504])
        if not found:
            raise SnapshotCorrupt("snapshot archive is damaged: empty sparse extension")
        entries += found
    return entries, realsize


def _parse_slots(raw: bytes, extended: int) -> tuple[Extents, bool]:
    """The filled slots (GNU tar stops at the first whose size field is empty)."""
    entries = []
    for pos in range(0, len(raw), _SLOT):
        if not raw[pos + 12]:
            if extended or any(raw[pos:]):  # a hole in the map, or more after its end
                raise SnapshotCorrupt("snapshot archive is damaged: bad sparse map")
            break
        entries.append(
            (_parse_number(raw[pos : pos + 12]), _parse_number(raw[pos + 12 : pos + 24]))
        )
    return entries, bool(extended)


def check_sparse_map(name: str, entries: Extents, realsize: int, stored: int) -> SparseMap:
    """Extents in order, inside the file, not overlapping, adding up to the stored data."""
    bad = SnapshotCorrupt(f"snapshot archive is damaged: {name!r} has a bad sparse map")
    if len(entries) > MAX_EXTENTS or not 0 <= realsize <= _MAX_SIZE:
        raise bad
    extents: Extents = []
    end = total = 0
    for offset, length in entries:
        if offset < end or length < 0 or offset + length > realsize:
            raise bad
        if length:
            extents.append((offset, length))
        end, total = offset + length, total + length
    if total != stored:
        raise bad
    return SparseMap(extents, realsize)


_ZERO_BLOCK = bytes(BLOCK)
_ZEROS = memoryview(bytes(1 << 20))


class HoleWriter:
    """Writes one new file's data at its offsets, leaving a hole wherever a run of at least
    :data:`BLOCK` zero bytes arrives; :meth:`finish` sets the size."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._end = 0  # the end of the last byte actually written

    def write(self, offset: int, buf: bytes, start: int, end: int) -> None:
        """Write ``buf[start:end]`` at file offset ``offset`` (``buf`` is not copied).

        Zeros at either end of the span are left out too, however few: a run of zeros split
        between two chunks of the stream still becomes a hole.
        """
        base = offset - start  # file offset = base + index into buf
        pos = start if buf[start] else _zero_run_end(buf, start, end)
        while pos < end:
            run = buf.find(_ZERO_BLOCK, pos, end)  # C speed over data: no Python per block
            if run >= 0:
                stop = _zero_run_end(buf, run + BLOCK, end)
            elif buf[end - 1]:  # most spans, a small file's whole data among them
                run = stop = end
            else:
                tail = buf[max(pos, end - BLOCK) : end]
                run, stop = end - len(tail) + len(tail.rstrip(b"\0")), end
            if run > pos:
                self._pwrite(memoryview(buf)[pos:run], base + pos)
            pos = stop

    def _pwrite(self, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written
        self._end = max(self._end, offset)

    def finish(self, size: int) -> None:
        if self._end < size:  # ends in a hole (or is one)
            os.ftruncate(self._fd, size)


def _zero_run_end(buf: bytes, pos: int, end: int) -> int:
    """The end of the run of zeros (possibly empty) starting at ``pos``, within ``buf[:end]``."""
    rest = end - pos
    if rest <= len(_ZEROS) and buf.startswith(_ZEROS[:rest], pos, end):
        return end  # the common case: a hole spanning the rest of the chunk
    while buf.startswith(_ZERO_BLOCK, pos, end):
        pos += BLOCK
    tail = buf[pos : min(pos + BLOCK, end)]
    return pos + len(tail) - len(tail.lstrip(b"\0"))
