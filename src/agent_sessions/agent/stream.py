"""A turn's output: AI SDK v6 UI message stream chunks, the DBOS stream they go to, and the one
assistant message they add up to.

pydantic-ai's ``VercelAIEventStream`` turns agent events into chunks; we add the step framing
(one assistant message per turn, ``start-step``/``finish-step`` per model request), coalesce
text deltas (each stream write is a database write), and fold every chunk into the stored
assistant message so that what the client saw and what is persisted cannot drift apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Literal

from dbos import DBOS
from dbos._error import DBOSStreamTimeoutError
from pydantic_ai.messages import AgentStreamEvent, ModelResponse
from pydantic_ai.ui.vercel_ai import VercelAIEventStream

STREAM_KEY = "ui"
SDK_VERSION: Literal[6] = 6
COALESCE_SECONDS = 0.03
"""Text deltas of one part arriving within this window go out as one chunk."""

Chunk = dict[str, Any]


def encode_sse(chunk: Chunk | str) -> bytes:
    body = chunk if isinstance(chunk, str) else json.dumps(chunk, separators=(",", ":"))
    return f"data: {body}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"


class MessageBuilder:
    """Folds chunks into the UIMessage the AI SDK client builds from the same chunks."""

    def __init__(self, message: Chunk) -> None:
        self.message = message
        self.message.setdefault("parts", [])
        self.message.setdefault("metadata", {})
        self._open: dict[str, Chunk] = {}
        self._tools: dict[str, Chunk] = {
            p["toolCallId"]: p for p in self.parts if "toolCallId" in p
        }

    @property
    def parts(self) -> list[Chunk]:
        parts: list[Chunk] = self.message["parts"]
        return parts

    def begin_step(self, index: int) -> None:
        """Start model step ``index``; a step run again after a crash replaces its first try."""
        starts = [i for i, p in enumerate(self.parts) if p.get("type") == "step-start"]
        if index < len(starts):
            for p in self.parts[starts[index] :]:
                self._tools.pop(p.get("toolCallId", ""), None)
            del self.parts[starts[index] :]
        self.parts.append({"type": "step-start"})

    def apply(self, chunk: Chunk) -> None:
        kind = chunk["type"]
        if kind in ("text-start", "reasoning-start"):
            part = {"type": kind.split("-")[0], "text": "", "state": "streaming"}
            self._open[chunk["id"]] = part
            self.parts.append(part)
        elif kind in ("text-delta", "reasoning-delta"):
            if (streaming := self._open.get(chunk["id"])) is not None:
                streaming["text"] += chunk["delta"]
        elif kind in ("text-end", "reasoning-end"):
            if (ended := self._open.pop(chunk["id"], None)) is not None:
                ended["state"] = "done"
        elif kind == "tool-input-start":
            self._tool(chunk, state="input-streaming")
        elif kind == "tool-input-available":
            self._tool(chunk, state="input-available", input=chunk.get("input"))
        elif kind == "tool-input-error":
            self._tool(chunk, state="output-error", input=chunk.get("input"),
                       errorText=chunk.get("errorText"))  # fmt: skip
        elif kind == "tool-output-available":
            self._tool(chunk, state="output-available", output=chunk.get("output"))
        elif kind == "tool-output-error":
            self._tool(chunk, state="output-error", errorText=chunk.get("errorText"))
        elif kind.startswith("data-"):
            self._data(chunk)
        elif kind in ("message-metadata", "finish") and chunk.get("messageMetadata"):
            self.message["metadata"].update(chunk["messageMetadata"])

    def _tool(self, chunk: Chunk, *, state: str, **fields: Any) -> None:
        call_id = chunk["toolCallId"]
        part = self._tools.get(call_id)
        if part is None:
            name = chunk.get("toolName") or "unknown"
            part = {"type": f"tool-{name}", "toolCallId": call_id, "state": state}
            self._tools[call_id] = part
            self.parts.append(part)
        part["state"] = state
        part.update({k: v for k, v in fields.items() if v is not None or k == "output"})

    def _data(self, chunk: Chunk) -> None:
        if chunk.get("transient"):
            return
        part = {k: v for k, v in chunk.items() if k in ("type", "id", "data")}
        if "id" in chunk:
            for i, existing in enumerate(self.parts):
                if existing.get("type") == chunk["type"] and existing.get("id") == chunk["id"]:
                    self.parts[i] = part
                    return
        self.parts.append(part)

    @property
    def steps(self) -> int:
        return sum(p.get("type") == "step-start" for p in self.parts)

    @property
    def tool_calls(self) -> int:
        """Tool calls with an outcome (counted from the message, so a recovered turn counts
        the calls of the process that crashed too)."""
        return sum(p["state"].startswith("output") for p in self._tools.values())

    def open_tool_calls(self) -> list[str]:
        """Tool calls that never got an output (they end as errors when a turn stops)."""
        return [
            cid
            for cid, p in self._tools.items()
            if p["state"] in ("input-streaming", "input-available")
        ]

    def close_streaming_parts(self) -> list[Chunk]:
        """The ``*-end`` chunks for parts a stop or crash left open."""
        ends = []
        for chunk_id, part in list(self._open.items()):
            ends.append({"type": f"{part['type']}-end", "id": chunk_id})
        return ends


class StreamTail:
    """What a crashed attempt left open at the end of the stream, read back on recovery.

    Chunks are written as they happen, so a process killed mid-step leaves a step, a text part
    or a streaming tool input open; the recovered turn closes them before it goes on, keeping
    the stream valid for clients that read it from chunk 0.
    """

    def __init__(self) -> None:
        self.step_open = False
        self.open_parts: dict[str, str] = {}
        self.streaming_tools: dict[str, str] = {}

    def feed(self, chunk: Chunk) -> None:
        kind = chunk["type"]
        if kind == "start-step":
            self.step_open = True
        elif kind == "finish-step":
            self.step_open = False
        elif kind in ("text-start", "reasoning-start"):
            self.open_parts[chunk["id"]] = kind.split("-")[0]
        elif kind in ("text-end", "reasoning-end"):
            self.open_parts.pop(chunk["id"], None)
        elif kind == "tool-input-start":
            self.streaming_tools[chunk["toolCallId"]] = chunk.get("toolName", "unknown")
        elif kind.startswith(("tool-input-available", "tool-input-error", "tool-output")):
            self.streaming_tools.pop(chunk.get("toolCallId", ""), None)

    def closing_chunks(self) -> list[Chunk]:
        out: list[Chunk] = [{"type": f"{t}-end", "id": i} for i, t in self.open_parts.items()]
        for call_id, name in self.streaming_tools.items():
            out.append({
                "type": "tool-input-error", "toolCallId": call_id, "toolName": name, "input": None,
                "errorText": "Interrupted by a restart of the server; the step was run again.",
            })  # fmt: skip
        return out


async def read_tail(run_id: str) -> StreamTail:
    """Read this run's stream as far as it goes (on recovery only: it waits briefly at the end)."""
    tail = StreamTail()
    try:
        async for value in DBOS.read_stream_async(
            run_id, STREAM_KEY, polling_interval_sec=0.01, timeout_seconds=0.2
        ):
            tail.feed(json.loads(value))
    except DBOSStreamTimeoutError:  # the stream timed out at its current end: that is the tail
        pass
    return tail


class ChunkSink:
    """Sends a turn's chunks to its DBOS stream and folds them into the assistant message."""

    def __init__(
        self,
        builder: MessageBuilder,
        persist: Callable[[Chunk], Awaitable[None]],
        *,
        history_responses: int,
        check_stop: Callable[[], None],
    ) -> None:
        self.builder = builder
        self._persist = persist
        self._history_responses = history_responses
        self._check_stop = check_stop
        self._events = VercelAIEventStream(None, sdk_version=SDK_VERSION)
        self._pending: Chunk | None = None
        self._pending_since = 0.0
        self.step_open = False
        self._recovering_run: str | None = None

    # --- writing -----------------------------------------------------------------------------

    async def emit(self, chunk: Chunk) -> None:
        """Apply and send one chunk (text deltas may wait briefly to be merged)."""
        self.builder.apply(chunk)
        if chunk["type"] == "text-delta":
            now = time.monotonic()
            pending = self._pending
            if (
                pending is not None
                and pending["id"] == chunk["id"]
                and now - self._pending_since < COALESCE_SECONDS
            ):
                pending["delta"] += chunk["delta"]
                return
            await self.flush()
            self._pending, self._pending_since = dict(chunk), now
            return
        await self.flush()
        await _write(chunk)

    async def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await _write(pending)

    async def persist(self) -> None:
        await self.flush()
        await self._persist(self.builder.message)

    # --- agent events ------------------------------------------------------------------------

    async def handle(self, messages: list[Any], events: AsyncIterable[AgentStreamEvent]) -> None:
        """The DBOS event-stream handler: one call per model response, or per tool event."""
        await self._resume_stream()
        first = True
        async for event in events:
            self._check_stop()
            if first and event.event_kind in ("part_start", "part_delta"):
                await self.start_step(messages)
            first = False
            async for chunk in self._events.handle_event(event):
                await self.emit(json.loads(chunk.encode(SDK_VERSION)))
        await self.persist()

    def recovering(self, run_id: str) -> None:
        """This attempt follows a crash: close what the last one left open in the stream.

        Done lazily, by the first step that writes: a write outside a step would be recorded by
        DBOS as a step of its own that the first attempt did not have, and break replay.
        """
        self._recovering_run = run_id

    async def _resume_stream(self) -> None:
        run_id, self._recovering_run = self._recovering_run, None
        if run_id is None:
            return
        tail = await read_tail(run_id)
        for chunk in tail.closing_chunks():
            await _write(chunk)
        self.step_open = tail.step_open

    async def start_step(self, messages: list[Any]) -> None:
        index = sum(isinstance(m, ModelResponse) for m in messages) - self._history_responses
        if self.step_open:
            await self.emit({"type": "finish-step"})
        self.builder.begin_step(index)
        self.step_open = True
        await _write({"type": "start-step"})

    async def end(self) -> None:
        await self._resume_stream()
        for chunk in self.builder.close_streaming_parts():
            await self.emit(chunk)
        if self.step_open:
            await self.emit({"type": "finish-step"})
            self.step_open = False
        await self.flush()


async def _write(chunk: Chunk) -> None:
    await DBOS.write_stream_async(STREAM_KEY, json.dumps(chunk, separators=(",", ":")))
