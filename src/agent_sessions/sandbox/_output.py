"""Head + tail capture of a command's output.

The reader never stops draining (a full pipe would block the child, and a flood must not grow
our memory): it keeps the first and the last ``limit`` bytes and only counts the middle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_sessions.sandbox.base import OutputListener

__all__ = ["HeadTail", "capture_pair"]


class HeadTail:
    """Bounded capture of one stream; ``max_chars`` applies to the decoded text."""

    def __init__(self, max_chars: int, listener: Callable[[bytes], None] | None = None) -> None:
        self.max_chars = max(0, max_chars)
        # UTF-8 needs at most 4 bytes a character, so this many bytes always hold enough text.
        self._limit = 4 * self.max_chars
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0
        self._listener = listener
        """Sees every chunk, before the cap (a command's progress shown while it runs)."""

    def feed(self, chunk: bytes) -> None:
        if self._listener is not None:
            self._listener(chunk)
        self.total += len(chunk)
        view = memoryview(chunk)  # slices of a view copy nothing
        room = self._limit - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        if len(view) >= self._limit:  # only its end can be kept: never hold more
            self._tail[:] = view[len(view) - self._limit :]
        elif view:
            self._tail += view
            if len(self._tail) > 2 * self._limit:  # trim in batches, not on every chunk
                del self._tail[: len(self._tail) - self._limit]

    def result(self) -> tuple[str, bool]:
        """The text and whether its middle was dropped (a marker line shows where)."""
        tail = bytes(self._tail[-self._limit :]) if self._limit else b""
        dropped = self.total - len(self._head) - len(tail)
        if dropped == 0:
            text = (bytes(self._head) + tail).decode("utf-8", "replace")
            if len(text) <= self.max_chars:
                return text, False
        half = self.max_chars // 2
        head_text = bytes(self._head).decode("utf-8", "replace")[:half]
        tail_text = tail.decode("utf-8", "replace")
        tail_text = tail_text[len(tail_text) - (self.max_chars - half) :] if tail_text else ""
        if dropped == 0:  # everything was kept, but the text is longer than allowed
            full = (bytes(self._head) + tail).decode("utf-8", "replace")
            head_text, tail_text = full[:half], full[len(full) - (self.max_chars - half) :]
        omitted = self.total - len(head_text.encode()) - len(tail_text.encode())
        marker = f"\n[... {max(omitted, 0)} bytes truncated ...]\n"
        return head_text + marker + tail_text, True


def capture_pair(max_chars: int, on_output: OutputListener | None) -> tuple[HeadTail, HeadTail]:
    """The captures of a command's stdout and stderr, each telling ``on_output`` its chunks."""
    if on_output is None:
        return HeadTail(max_chars), HeadTail(max_chars)
    out = HeadTail(max_chars, functools.partial(on_output, "stdout"))
    return out, HeadTail(max_chars, functools.partial(on_output, "stderr"))
