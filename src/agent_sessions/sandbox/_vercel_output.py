"""A text sink for the SDK's output router that keeps only head and tail.

The SDK writes each output chunk of a command to a ``TextIO``-like object as it arrives; this one
feeds :class:`~agent_sessions.sandbox._output.HeadTail`, so a flood costs bounded memory, exactly
as with the local provider.
"""

from __future__ import annotations

from agent_sessions.sandbox._output import HeadTail

__all__ = ["CappedText"]


class CappedText:
    """Minimal ``TextIO`` (``write`` + ``flush``) with a head + tail cap."""

    def __init__(self, max_chars: int) -> None:
        self._capture = HeadTail(max_chars)

    def write(self, data: str) -> int:
        self._capture.feed(data.encode("utf-8", "surrogatepass"))
        return len(data)

    def flush(self) -> None:
        """Nothing buffered here."""

    def result(self) -> tuple[str, bool]:
        return self._capture.result()
