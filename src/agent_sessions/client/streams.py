"""A turn's stream: SSE ``data:`` lines → typed chunks, resumed after a dropped connection.

A turn runs on the server whether or not anyone reads it, and its chunks are numbered from 0,
so a dropped connection loses nothing: the reader counts the chunks it got and asks
``GET /api/chat/{chatId}/stream?startIndex=<count>`` for the rest, which any server process
answers. The resumed body starts exactly at that chunk: nothing is repeated, nothing skipped.

A body that ends (``data: [DONE]``) before the turn's ``finish`` chunk is resumed too. When no
turn is live any more (204), the turn ended while the reader was away and its last chunks
cannot be read as a stream: the iteration ends with :attr:`TurnStream.finished` False, and
the chat's stored message (``get_chat``) holds the whole reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from contextlib import aclosing
from types import TracebackType
from typing import Self

import anyio
import httpx

from agent_sessions.client.chunks import Chunk, FinishChunk, parse_chunk
from agent_sessions.client.errors import StreamDropped
from agent_sessions.client.retry import RetryPolicy

__all__ = ["AsyncTurnStream", "TurnStream", "aparse_sse", "parse_sse"]

log = logging.getLogger("agent_sessions.client")

DONE = "[DONE]"
RUN_ID = "x-workflow-run-id"
ResumeHook = Callable[[int, str], None]
"""Called before each resume with the attempt (1, 2, … in a row) and why the stream dropped."""


class _Events:
    """SSE framing: lines in, the ``data`` of each complete event out. Comments (``:…``) and
    other fields carry nothing here; an event cut off before its blank line is never out."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            body, self._data = "\n".join(self._data), []
            return body or None
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[Chunk]:
    """SSE lines → chunks until ``data: [DONE]``; :class:`StreamDropped` if the lines end first."""
    events = _Events()
    for line in lines:
        body = events.feed(line)
        if body == DONE:
            return
        if body is not None:
            yield parse_chunk(body)
    raise StreamDropped("the stream ended without [DONE]")


async def aparse_sse(lines: AsyncIterable[str]) -> AsyncGenerator[Chunk, None]:
    """:func:`parse_sse` over async lines."""
    events = _Events()
    async for line in lines:
        body = events.feed(line)
        if body == DONE:
            return
        if body is not None:
            yield parse_chunk(body)
    raise StreamDropped("the stream ended without [DONE]")


class Position:
    """Where a reader is in the run's stream, and how its resumes go (both readers use it).

    ``index`` is the index of the next chunk. Two chunks a response may carry are not the run's:
    the ``start`` that opens the answer to a question or an approval (``uncounted``), and the
    ``finish`` that ends a response where the turn waits for that answer (``paused``: the
    reader's own, without the ``messageMetadata`` of the turn's real ``finish``)."""

    def __init__(
        self,
        chat_id: str,
        index: int,
        policy: RetryPolicy,
        on_resume: ResumeHook | None = None,
        *,
        uncounted: int = 0,
    ) -> None:
        self.chat_id = chat_id
        self.index = index
        self.finished = False
        self.paused = False
        self._policy = policy
        self._on_resume = on_resume
        self._uncounted = uncounted
        self._failures = 0

    def got(self, chunk: Chunk) -> None:
        self._failures = 0
        if isinstance(chunk, FinishChunk):
            self.finished = True
            self.paused = (
                chunk.finish_reason == "tool-calls"
                and "message_metadata" not in chunk.model_fields_set
            )
            if self.paused:
                return
        if self._uncounted:
            self._uncounted -= 1
        else:
            self.index += 1

    def lost(self, reason: str) -> float:
        """The stream dropped: seconds to wait before resuming, or :class:`StreamDropped`."""
        self._uncounted = 0  # a resumed body has no start of its own
        self._failures += 1
        if self._failures > self._policy.stream_resumes:
            raise StreamDropped(f"lost the stream and could not resume: {reason}")
        log.info("chat %s: stream lost (%s), resuming at %d", self.chat_id, reason, self.index)
        if self._on_resume is not None:
            self._on_resume(self._failures, reason)
        return self._policy.resume_delay(self._failures)


def _why(err: Exception) -> str:
    return str(err) or type(err).__name__


class _Stream:
    def __init__(self, response: httpx.Response, position: Position) -> None:
        self.run_id: str | None = response.headers.get(RUN_ID)
        """The run (``GET /api/chat/runs/{runId}``) of the turn being read."""
        self._position = position
        self._current: httpx.Response | None = response

    @property
    def chat_id(self) -> str:
        return self._position.chat_id

    @property
    def index(self) -> int:
        """The index in the run's stream of the next chunk (after a pause, the ``start_index``
        to answer with)."""
        return self._position.index

    @property
    def paused(self) -> bool:
        """Whether the response ended where the turn waits for a person: answer the question
        or the approvals with ``start_index=`` :attr:`index` for the rest of the turn."""
        return self._position.paused

    @property
    def finished(self) -> bool:
        """Whether the response's ``finish`` chunk was read: the turn's, or a pause
        (:attr:`paused`). False after a stream whose turn ended while the connection was down:
        the chat's stored message has the whole reply."""
        return self._position.finished


class TurnStream(_Stream):
    """The chunks of a turn as they come: iterate it (or ``with`` it, to hang up early)."""

    def __init__(
        self,
        response: httpx.Response,
        position: Position,
        reopen: Callable[[int], httpx.Response | None],
    ) -> None:
        super().__init__(response, position)
        self._reopen = reopen
        self._chunks = self._follow(response)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Chunk:
        return next(self._chunks)

    def close(self) -> None:
        """Hang up (the turn goes on: stop it with ``stop_turn``)."""
        self._chunks.close()
        if self._current is not None:
            self._current.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _follow(self, response: httpx.Response | None) -> Generator[Chunk, None, None]:
        position = self._position
        while response is not None:
            self._current = response
            try:
                for chunk in parse_sse(response.iter_lines()):
                    position.got(chunk)
                    yield chunk
                if position.finished:
                    return
                reason = "the stream ended before the turn finished"
            except (httpx.TransportError, StreamDropped) as err:
                reason = _why(err)
            finally:
                response.close()
                self._current = None
            response = self._resume(reason)

    def _resume(self, reason: str) -> httpx.Response | None:
        """The rest of the stream, or None when no turn is live any more."""
        while True:
            time.sleep(self._position.lost(reason))
            try:
                return self._reopen(self._position.index)
            except httpx.TransportError as err:
                reason = _why(err)


class AsyncTurnStream(_Stream):
    """:class:`TurnStream` for ``async for`` (and ``async with``)."""

    def __init__(
        self,
        response: httpx.Response,
        position: Position,
        reopen: Callable[[int], Awaitable[httpx.Response | None]],
    ) -> None:
        super().__init__(response, position)
        self._reopen = reopen
        self._chunks = self._follow(response)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Chunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        """Hang up (the turn goes on: stop it with ``stop_turn``)."""
        await self._chunks.aclose()
        if self._current is not None:
            await self._current.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _follow(self, response: httpx.Response | None) -> AsyncGenerator[Chunk, None]:
        position = self._position
        while response is not None:
            self._current = response
            try:
                async with aclosing(aparse_sse(response.aiter_lines())) as chunks:
                    async for chunk in chunks:
                        position.got(chunk)
                        yield chunk
                if position.finished:
                    return
                reason = "the stream ended before the turn finished"
            except (httpx.TransportError, StreamDropped) as err:
                reason = _why(err)
            finally:
                await response.aclose()
                self._current = None
            response = await self._resume(reason)

    async def _resume(self, reason: str) -> httpx.Response | None:
        while True:
            await anyio.sleep(self._position.lost(reason))
            try:
                return await self._reopen(self._position.index)
            except httpx.TransportError as err:
                reason = _why(err)
