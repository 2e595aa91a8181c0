"""The ``read`` tool's view of a file: numbered lines, streamed with bounded memory.

A file in the sandbox can be any size (``truncate -s 1G`` costs nothing), so the file is never
loaded whole: it is scanned chunk by chunk from the start, only the wanted lines are kept (each
cut at :data:`READ_MAX_LINE` characters, the rest counted without being stored), and scanning
stops after :data:`READ_SCAN_BYTES`. Line numbers count ``\\n`` as ``grep -n`` and ``sed`` do,
so the model can go on with them in bash.
"""

from __future__ import annotations

import contextlib

from agent_sessions.sandbox import Sandbox

__all__ = [
    "READ_MAX_LINE",
    "READ_MAX_OUTPUT",
    "READ_SCAN_BYTES",
    "BinaryFile",
    "LineScanner",
    "numbered_lines",
]

READ_MAX_LINE = 2000
"""Characters shown of one line (minified files would otherwise flood the context)."""
READ_MAX_OUTPUT = 100_000
"""Characters of numbered lines one call returns at most; the footer says where to go on."""
READ_SCAN_BYTES = 64 << 20
"""Bytes scanned at most from the start of the file; past them the tool points to bash."""
_SNIFF = 8192
"""A NUL in this many first bytes makes the file binary (as ``grep -I`` and git judge it)."""
_KEEP = 4 * READ_MAX_LINE
"""Bytes kept of a wanted line: UTF-8 needs at most four a character."""


class BinaryFile(Exception):
    """The file has a NUL byte near its start."""


class LineScanner:
    """Feeds on a file's chunks in order; keeps the lines ``start`` .. ``start + count - 1``.

    Three phases: skipping to ``start`` (newlines counted, nothing kept), collecting (each line
    kept up to :data:`_KEEP` bytes, its length counted), and counting once it has its lines or
    its output cap (``done``): the rest of the chunk at hand is counted so that a small file
    still gets its line total, and the caller reads no further chunk.
    """

    def __init__(self, start: int, count: int) -> None:
        self.start, self.last = start, start + count - 1
        self.line = 1
        """Number of the line being scanned."""
        self.at_line_start = True
        self.kept = bytearray()
        self.length = 0
        """Bytes of the line being collected, seen so far."""
        self.shown: list[str] = []
        self.chars = 0
        self.full = False
        """The output cap stopped collecting."""
        self.done = False

    def feed(self, chunk: bytes) -> None:
        pos, end = 0, len(chunk)
        while pos < end:
            if self.done:
                self.line += chunk.count(b"\n", pos)
                break
            if self.line < self.start:
                pos = self._skip(chunk, pos)
                continue
            newline = chunk.find(b"\n", pos)
            stop = end if newline < 0 else newline
            room = _KEEP - len(self.kept)
            if room > 0:
                self.kept += chunk[pos : min(stop, pos + room)]
            self.length += stop - pos
            if newline < 0:
                break
            pos = newline + 1
            self._emit()
            self.line += 1
        if end:
            self.at_line_start = chunk.endswith(b"\n")

    def _skip(self, chunk: bytes, pos: int) -> int:
        need = self.start - self.line
        found = chunk.count(b"\n", pos)
        if found < need:
            self.line += found
            return len(chunk)
        for _ in range(need):
            pos = chunk.index(b"\n", pos) + 1
        self.line += need
        return pos

    def _emit(self, *, scanned_all: bool = True) -> None:
        """Show the line just collected (``scanned_all`` False: the scan stopped inside it)."""
        kept, length = bytes(self.kept), self.length
        self.kept.clear()
        self.length = 0
        whole = length == len(kept)
        text = (kept.removesuffix(b"\r") if whole else kept).decode("utf-8", "replace")
        if not scanned_all:
            text = f"{text[:READ_MAX_LINE]}… (line cut: over {length} bytes, not scanned further)"
        elif len(text) > READ_MAX_LINE or not whole:
            cut = f"line cut at {READ_MAX_LINE} characters of {length} bytes"
            text = f"{text[:READ_MAX_LINE]}… ({cut})"
        entry = f"{self.line}: {text}"
        if self.shown and self.chars + 1 + len(entry) > READ_MAX_OUTPUT:
            self.full = self.done = True
            return
        self.shown.append(entry)
        self.chars += len(entry) + 1
        if self.line >= self.last:
            self.done = True

    def finish(self, *, eof: bool) -> None:
        """The stream ended: at the end of the file, or (``eof`` False) at the scan budget."""
        if self.done or self.line < self.start or self.at_line_start:
            return
        self._emit(scanned_all=eof)

    @property
    def total(self) -> int:
        """Lines in what was scanned (the file's total once it was scanned to its end)."""
        return self.line - (1 if self.at_line_start else 0)


async def numbered_lines(sb: Sandbox, path: str, size: int, start: int, count: int) -> str:
    """Lines ``start`` .. ``start + count - 1`` of the regular file ``path`` (``size`` bytes by
    its stat), numbered ``N: line``, with a footer that says what was not shown and how to get
    it. Raises :class:`BinaryFile`."""
    scanner = LineScanner(start, count)
    scanned, eof, more = 0, False, False
    with_budget = READ_SCAN_BYTES + 1  # one byte more tells "the budget ran out" from EOF
    async with contextlib.aclosing(sb.read_stream(path, length=with_budget)) as chunks:
        async for chunk in chunks:
            if scanner.done:  # it has its lines; this chunk only says that more follow
                more = True
                break
            if scanned < _SNIFF and b"\0" in chunk[: _SNIFF - scanned]:
                raise BinaryFile(path)
            take = chunk[: READ_SCAN_BYTES - scanned]
            scanned += len(take)
            scanner.feed(take)
            if len(take) < len(chunk):
                break
        else:
            eof = True
    scanner.finish(eof=eof)
    return _render(scanner, size, eof=eof, more=more)


def _render(s: LineScanner, size: int, *, eof: bool, more: bool) -> str:
    budget = f"{READ_SCAN_BYTES >> 20} MiB"
    if not s.shown:
        if eof:
            return f"(file has {s.total} lines)"
        return (
            f"(line {s.start} is not in the first {budget} of this {size}-byte file (lines in "
            f"them: {s.total}); only that much is scanned: read further with bash, e.g. "
            f"sed -n '{s.start},{s.last}p' or tail -c)"
        )
    first, last = s.start, s.start + len(s.shown) - 1
    if s.full:
        footer = (
            f"(lines {first}-{last}; output capped at {READ_MAX_OUTPUT} characters: "
            f"read on with offset={last + 1})"
        )
    elif eof:
        footer = f"(lines {first}-{last} of {s.total})"
    elif more or s.done:
        footer = f"(lines {first}-{last}; more follow: read on with offset={last + 1})"
    else:
        footer = (
            f"(lines {first}-{last}; only the first {budget} of this {size}-byte file are "
            f"scanned and the rest was not: read further with bash, e.g. sed -n or tail -c)"
        )
    return "\n".join(s.shown) + "\n" + footer
