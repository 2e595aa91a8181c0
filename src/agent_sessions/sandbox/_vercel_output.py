"""A text sink for the SDK's output router that keeps only head and tail.

The SDK writes each output chunk of a command to a ``TextIO``-like object as it arrives; this one
feeds :class:`~agent_sessions.sandbox._output.HeadTail`, so a flood costs bounded memory, exactly
as with the local provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_sessions.sandbox._output import HeadTail, capture_pair

if TYPE_CHECKING:
    from agent_sessions.sandbox.base import OutputListener

__all__ = ["CappedText"]


class CappedText:
    """Minimal ``TextIO`` (``write`` + ``flush``) with a head + tail cap."""

    def __init__(self, capture: HeadTail) -> None:
        self._capture = capture

    @classmethod
    def pair(
        cls, max_chars: int, on_output: OutputListener | None
    ) -> tuple[CappedText, CappedText]:
        """Sinks for a command's stdout and stderr, each telling ``on_output`` its chunks."""
        out, err = capture_pair(max_chars, on_output)
        return cls(out), cls(err)

    def write(self, data: str) -> int:
        self._capture.feed(data.encode("utf-8", "surrogatepass"))
        return len(data)

    def flush(self) -> None:
        """Nothing buffered here."""

    def result(self) -> tuple[str, bool]:
        return self._capture.result()
