"""A turn's chunks as it runs: pydantic-ai's agent events made into AI SDK v6 UI message stream
chunks, sent to the run's stream (:mod:`.stream`) and folded into the one assistant message
they add up to.

pydantic-ai's ``VercelAIEventStream`` turns agent events into chunks; we add the step framing
(one assistant message per turn, ``start-step``/``finish-step`` per model request), batch
chunks into one stream value per 25 ms (each value is a database row; the writes of all turns
are committed together, ADR 16), and fold every chunk into the stored assistant message so
that what the client saw and what is persisted cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Literal

from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartEndEvent,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.ui.vercel_ai import VercelAIEventStream

from agent_sessions.agent.stream import Chunk, read_tail, write_chunks

SDK_VERSION: Literal[6] = 6
BATCH_SECONDS = 0.025
"""Chunks emitted within this window go out as one stream write (text deltas merged)."""

OPEN_TOOL_STATES = (
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
)
"""A tool part in one of these has no outcome yet."""


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
        elif kind == "tool-output-available":  # a preliminary one is replaced by the next
            self._tool(chunk, state="output-available", output=chunk.get("output"),
                       preliminary=chunk.get("preliminary") or None)  # fmt: skip
        elif kind == "tool-output-error":
            self._tool(chunk, state="output-error", errorText=chunk.get("errorText"))
        elif kind == "tool-approval-request":
            self._tool(chunk, state="approval-requested", approval={"id": chunk["approvalId"]})
        elif kind == "tool-output-denied":
            self._tool(chunk, state="output-denied")
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
        part.pop("preliminary", None)  # the AI SDK client unsets it on every update
        if state == "output-error":  # and sets the output it has then, none
            part.pop("output", None)
        part.update({k: v for k, v in fields.items() if v is not None or k == "output"})

    def respond(self, call_id: str, *, approved: bool, reason: str | None) -> None:
        """A person answered the call's approval request (as the AI SDK client records it)."""
        part = self._tools.get(call_id)
        if part is None or part["state"] != "approval-requested":
            return
        approval = {**part.get("approval", {}), "approved": approved}
        if reason:
            approval["reason"] = reason
        part["state"] = "approval-responded"
        part["approval"] = approval

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
        return sum(_has_outcome(p) for p in self._tools.values())

    def open_tool_calls(self) -> list[str]:
        """Tool calls that never got an output (they end as errors when a turn stops)."""
        return [cid for cid, p in self._tools.items() if not _has_outcome(p)]

    def ending_open_tool_calls(self, reason: str) -> list[Chunk]:
        """The chunks that end the open tool calls as errors saying ``reason``; a command
        stopped while it ran keeps in its error what it had shown of its output."""
        return [
            {"type": "tool-output-error", "toolCallId": call_id,
             "errorText": reason + _output_so_far(self._tools[call_id])}
            for call_id in self.open_tool_calls()
        ]  # fmt: skip

    def close_streaming_parts(self) -> list[Chunk]:
        """The ``*-end`` chunks for parts a stop or crash left open."""
        ends = []
        for chunk_id, part in list(self._open.items()):
            ends.append({"type": f"{part['type']}-end", "id": chunk_id})
        return ends


def _has_outcome(part: Chunk) -> bool:
    return part["state"] not in OPEN_TOOL_STATES and not part.get("preliminary")


def _output_so_far(part: Chunk) -> str:
    """A preliminary output's text (the bash tool's ``stdout``/``stderr`` tails), to keep."""
    output = part.get("output") if part.get("preliminary") else None
    if not isinstance(output, dict):
        return ""
    shown = [
        f"{name}:\n{text}" if name == "stderr" else text
        for name in ("stdout", "stderr")
        if isinstance(text := output.get(name), str) and text
    ]
    if not shown:
        return ""
    lead = "last output" if output.get("truncated") else "output"
    return f"\n\nIts {lead} before it ended:\n" + "\n".join(shown)


def as_shown(chunks: list[Chunk], stored: Chunk | None, message_id: str, interrupted: str) -> Chunk:
    """What a turn that ended with its host had shown, as its final message: the stored one,
    or the one ``chunks`` (its whole stream) add up to when the stream went further (the host
    stores the message as each step ends, after writing its chunks); its open parts closed and
    its open tool calls ended as errors saying ``interrupted``."""
    builder = MessageBuilder({"id": message_id, "role": "assistant"})
    for chunk in chunks:
        if chunk.get("type") == "start-step":
            builder.parts.append({"type": "step-start"})
        else:
            builder.apply(chunk)
    if stored is not None and len(stored.get("parts", [])) >= len(builder.parts):
        builder = MessageBuilder(stored)
    for part in builder.parts:
        if part.get("state") == "streaming":
            part["state"] = "done"
    for chunk in builder.ending_open_tool_calls(interrupted):
        builder.apply(chunk)
    return builder.message


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
        self._batch: list[Chunk] = []
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.step_open = False
        self._recovering_run: str | None = None
        self._streamed_outputs: set[str] = set()
        """Tool calls whose output is in the stream (also from a crashed attempt's writes)."""

    # --- writing -----------------------------------------------------------------------------

    async def emit(self, chunk: Chunk) -> None:
        """Apply one chunk and queue it; queued chunks go out together within BATCH_SECONDS."""
        if self._recovering_run is not None:  # whatever writes first closes the crashed tail
            await self._resume_stream()
        self.builder.apply(chunk)
        last = self._batch[-1] if self._batch else None
        if (
            chunk["type"] == "text-delta"
            and last is not None
            and last["type"] == "text-delta"
            and last["id"] == chunk["id"]
        ):
            last["delta"] += chunk["delta"]
        else:
            self._batch.append(dict(chunk))
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(BATCH_SECONDS)
        self._timer = None
        await self._write_batch()

    async def flush(self) -> None:
        """Send what is queued now (before a step ends: nothing may outlive its step)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        await self._write_batch()

    async def _write_batch(self) -> None:
        async with self._lock:
            batch, self._batch = self._batch, []
            if batch:
                await write_chunks(batch)

    async def persist(self) -> None:
        """Send what is queued and store the message, both before the step ends. The two go to
        different databases and neither depends on the other, so their commits overlap."""
        await asyncio.gather(self.flush(), self._persist(self.builder.message))

    async def pause(self, chunks: list[Chunk]) -> None:
        """End the step with ``chunks`` (approval requests) while the turn waits for a person.

        The message is stored before the chunks are written: a reader that sees them checks the
        stored message to tell a wait still open (it ends its response there) from one answered
        since (it reads on).
        """
        await self._resume_stream()
        chunks = list(chunks)
        if self.step_open:
            chunks.append({"type": "finish-step"})
            self.step_open = False
        for chunk in chunks:
            self.builder.apply(chunk)
        await self.flush()
        await self._persist(self.builder.message)
        await write_chunks(chunks)

    async def emit_stored(self, chunk: Chunk) -> None:
        """Send one chunk and store the message now, not at the end of the turn: a client that
        reloads the chat meanwhile sees it (the commit and pull-request parts after a turn)."""
        await self.emit(chunk)
        await self.persist()

    # --- agent events ------------------------------------------------------------------------

    async def handle(self, messages: list[Any], events: AsyncIterable[AgentStreamEvent]) -> None:
        """The events of one model response, as it streams (inside the model's step).

        A tool call's input is announced (``tool-input-available``) when the model finishes
        streaming it; its output follows from :meth:`begin_request` or :meth:`tool_returns`.
        """
        first, emitted = True, False
        async for event in events:
            self._check_stop()
            if first and event.event_kind in ("part_start", "part_delta"):
                await self.start_step(messages)
            first = False
            chunks = [
                json.loads(c.encode(SDK_VERSION)) async for c in self._events.handle_event(event)
            ]
            if isinstance(event, PartEndEvent) and isinstance(event.part, ToolCallPart):
                chunks.append({
                    "type": "tool-input-available", "toolCallId": event.part.tool_call_id,
                    "toolName": event.part.tool_name, "input": event.part.args_as_dict(),
                })  # fmt: skip
            for chunk in chunks:
                await self.emit(chunk)
                emitted = True
        if emitted:
            await self.persist()

    async def begin_request(self, messages: list[ModelMessage]) -> None:
        """Before a model request: send the outputs of this turn's tool calls that the
        request's history holds and the stream has not shown yet (no step of their own)."""
        await self._resume_stream()
        waiting = set(self.builder.open_tool_calls())
        found: list[ToolReturnPart] = []
        for message in reversed(messages):
            if not waiting:
                break
            if isinstance(message, ModelRequest):
                for part in message.parts:
                    if isinstance(part, ToolReturnPart) and part.tool_call_id in waiting:
                        waiting.discard(part.tool_call_id)
                        found.append(part)
        await self.tool_returns(found[::-1])

    async def tool_returns(self, parts: list[ToolReturnPart]) -> None:
        """Send tool outputs, converted by pydantic-ai's event stream as a result event would be
        (inputs were announced at the end of the model's part, so a backfilled one is dropped).
        An output a crashed attempt already streamed goes into the message only."""
        await self._resume_stream()
        for part in parts:
            streamed = part.tool_call_id in self._streamed_outputs
            async for encoded in self._events.handle_event(FunctionToolResultEvent(part)):
                chunk = json.loads(encoded.encode(SDK_VERSION))
                if chunk["type"] == "tool-input-available":
                    continue
                if chunk["type"] == "tool-input-error":  # its input was already announced
                    chunk = {"type": "tool-output-error", "toolCallId": chunk["toolCallId"],
                             "errorText": chunk.get("errorText", "Invalid tool input")}  # fmt: skip
                if streamed:
                    self.builder.apply(chunk)
                else:
                    await self.emit(chunk)
            self._streamed_outputs.add(part.tool_call_id)

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
        await write_chunks(tail.closing_chunks())
        self.step_open = tail.step_open
        self._streamed_outputs |= tail.outputs

    async def start_step(self, messages: list[Any]) -> None:
        index = sum(isinstance(m, ModelResponse) for m in messages) - self._history_responses
        if self.step_open:
            await self.emit({"type": "finish-step"})
        self.builder.begin_step(index)
        self.step_open = True
        self._batch.append({"type": "start-step"})

    async def end(self) -> None:
        await self._resume_stream()
        for chunk in self.builder.close_streaming_parts():
            await self.emit(chunk)
        if self.step_open:
            await self.emit({"type": "finish-step"})
            self.step_open = False
        await self.flush()
