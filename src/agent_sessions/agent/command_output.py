"""A running command's output, shown while it runs.

A build or a test run can take minutes; its result reaches the model and the client only when it
ends. Meanwhile the tail of what it printed goes to the client as the AI SDK's *preliminary*
tool outputs (``tool-output-available`` with ``preliminary: true``): each replaces the one
before, the final output replaces them all, and the AI SDK client folds them so (its streamed
tool results). They go through the turn's sink like any chunk, so a client that reloads sees the
latest; they never reach the model. Only a tail is sent, at most once a second and only when
the output changed, so a command printing a flood costs the stream a few kilobytes a second.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from agent_sessions.agent.sink import ChunkSink
from agent_sessions.sandbox import OutputListener

__all__ = ["TAIL_BYTES", "LiveOutput", "shown_while_running"]

TAIL_BYTES = 4096
"""Bytes of each of stdout and stderr a preliminary output holds (its latest lines)."""
FIRST_AFTER = 0.5
"""Seconds before the first one: a quick command shows only its result."""
EVERY = 1.0
"""Seconds between two of them at the most often."""


class LiveOutput:
    """The tails of a running command's stdout and stderr, fed as the sandbox reads them."""

    def __init__(self) -> None:
        self._tails: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._totals = {"stdout": 0, "stderr": 0}
        self._fed = 0
        self._shown = 0

    def feed(self, stream: Literal["stdout", "stderr"], chunk: bytes) -> None:
        tail = self._tails[stream]
        tail += chunk[-TAIL_BYTES:]
        if len(tail) > 2 * TAIL_BYTES:  # trimmed in batches, not on every chunk
            del tail[:-TAIL_BYTES]
        self._totals[stream] += len(chunk)
        self._fed += 1

    def take(self) -> dict[str, Any] | None:
        """The output to show now, or None when nothing came since the last one."""
        if self._fed == self._shown:
            return None
        self._shown = self._fed
        output: dict[str, Any] = {k: _text(t[-TAIL_BYTES:]) for k, t in self._tails.items()}
        output["running"] = True
        if any(total > TAIL_BYTES for total in self._totals.values()):
            output["truncated"] = True  # earlier output is not shown
        return output


def _text(data: bytes | bytearray) -> str:
    """Whole characters only: a tail may begin, and a chunk end, inside one."""
    start = 0
    while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:  # continuation bytes
        start += 1
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return decoder.decode(bytes(data[start:]), final=False)  # holds back a cut character


@contextlib.asynccontextmanager
async def shown_while_running(
    sink: ChunkSink | None, call_id: str | None
) -> AsyncIterator[OutputListener | None]:
    """The listener to run a command with, sending its output to the client as it runs
    (None without a client: a subagent's command, or no call id to attach it to)."""
    if sink is None or call_id is None:
        yield None
        return
    live = LiveOutput()
    showing = asyncio.ensure_future(_show(sink, call_id, live))
    try:
        yield live.feed
    finally:
        showing.cancel()
        # Progress that could not be written is no failure of the command.
        await asyncio.gather(showing, return_exceptions=True)
    await sink.flush()  # written within the command's step, as every chunk is within its own


async def _show(sink: ChunkSink, call_id: str, live: LiveOutput) -> None:
    await asyncio.sleep(FIRST_AFTER)
    while True:
        output = live.take()
        if output is not None:
            await sink.emit({
                "type": "tool-output-available", "toolCallId": call_id, "output": output,
                "preliminary": True,
            })  # fmt: skip
        await asyncio.sleep(EVERY)
