"""Sending requests: the sync and the async transport under :class:`~.Client` and
:class:`~.AsyncClient`, with the retries of :class:`~.RetryPolicy` and the error classes of
:mod:`.errors`. What each route sends is in :mod:`.routes`, once for both."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx

from agent_sessions import __version__
from agent_sessions.client.errors import error_for
from agent_sessions.client.retry import RetryPolicy
from agent_sessions.client.streams import AsyncTurnStream, Position, ResumeHook, TurnStream

log = logging.getLogger("agent_sessions.client")

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
"""Seconds; a workspace route may first restore a hibernated sandbox."""
TAIL_INDEX = "x-workflow-stream-tail-index"
STREAM_TIMEOUT = httpx.Timeout(DEFAULT_TIMEOUT, read=None)
"""A turn may be silent for minutes (a long ``bash``; the server sends a comment every 15 s),
so reading a stream never times out."""


@dataclass(frozen=True)
class Request:
    """One HTTP request of a route; ``safe``: sending it twice does no more than once."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    safe: bool = False


@dataclass(frozen=True)
class StreamStart:
    """Where a turn's response starts in the run's stream, and how to ask for the rest."""

    chat_id: str
    index: int
    """Negative: that many chunks before the end (``GET …/stream?startIndex=-N``)."""
    reopen: Callable[[int], Request]
    """The request that resumes the stream at an index (``GET /api/chat/{chatId}/stream``)."""
    uncounted: int = 0
    """Chunks the response opens with that are not the run's (an answer's own ``start``)."""


class _Transport:
    _http: httpx.Client | httpx.AsyncClient

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_resume: ResumeHook | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("AGENT_SESSIONS_URL") or DEFAULT_URL).rstrip(
            "/"
        )
        key = api_key if api_key is not None else os.environ.get("AGENT_SESSIONS_API_KEY")
        self.retry = retry or RetryPolicy()
        self.on_resume = on_resume
        self._timeout = timeout
        self._headers = {
            "user-agent": f"agent-sessions-client/{__version__}",
            **({"x-api-key": key} if key else {}),
            **(headers or {}),
        }

    # What both transports decide alike; each does only its own I/O (send, read, sleep).

    def _built(self, request: Request, stream: bool) -> httpx.Request:
        return self._http.build_request(
            request.method, request.path, params=request.params, json=request.json,
            content=request.content,
            timeout=STREAM_TIMEOUT if stream else httpx.USE_CLIENT_DEFAULT,
        )  # fmt: skip

    def _again_after_failure(
        self, request: Request, err: httpx.TransportError, attempt: int
    ) -> float:
        """Seconds before sending ``request`` again after a lost connection; ``err`` when not."""
        delay = self.retry.after_failure(err, attempt, request.safe)
        if delay is None:
            raise err
        self._log_retry(request, delay, str(err) or type(err).__name__)
        return delay

    def _again_after_answer(
        self, request: Request, response: httpx.Response, attempt: int
    ) -> float:
        """Seconds before sending ``request`` again after an error answer (read and closed), or
        the answer's error class."""
        delay = self.retry.after_answer(response, attempt, request.safe)
        if delay is None:
            raise error_for(response)
        self._log_retry(request, delay, f"HTTP {response.status_code}")
        return delay

    @staticmethod
    def _log_retry(request: Request, delay: float, why: str) -> None:
        log.info("%s %s: %s; trying again in %.2f s", request.method, request.path, why, delay)

    def _position(self, start: StreamStart, response: httpx.Response) -> Position:
        index = start.index
        if index < 0:  # counted back from the last chunk written, as the server did
            tail = int(response.headers.get(TAIL_INDEX, "-1"))
            index = max(0, tail + 1 + index)
        return Position(start.chat_id, index, self.retry, self.on_resume, uncounted=start.uncounted)


class SyncTransport(_Transport):
    """Blocking requests on an ``httpx.Client`` (one connection pool per client)."""

    _http: httpx.Client

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_resume: ResumeHook | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, retry=retry, on_resume=on_resume, headers=headers
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, request: Request, *, stream: bool = False) -> httpx.Response:
        """The first answer under 400 (after the retries the policy allows), else its error."""
        attempt = 0
        while True:
            try:
                response = self._http.send(self._built(request, stream), stream=stream)
            except httpx.TransportError as err:
                delay = self._again_after_failure(request, err, attempt)
            else:
                if response.status_code < 400:
                    return response
                response.read()
                response.close()
                delay = self._again_after_answer(request, response, attempt)
            time.sleep(delay)
            attempt += 1

    def _call(self, request: Request, parse: Callable[[httpx.Response], T]) -> T:
        return parse(self._send(request))

    def _open(self, request: Request) -> httpx.Response | None:
        response = self._send(request, stream=True)
        if response.status_code == 204:  # no turn is live
            response.close()
            return None
        return response

    def _stream(self, request: Request, start: StreamStart) -> TurnStream | None:
        response = self._open(request)
        if response is None:
            return None
        return TurnStream(
            response, self._position(start, response), lambda index: self._open(start.reopen(index))
        )


class AsyncTransport(_Transport):
    """:class:`SyncTransport` on an ``httpx.AsyncClient``."""

    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_resume: ResumeHook | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, retry=retry, on_resume=on_resume, headers=headers
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, request: Request, *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.send(self._built(request, stream), stream=stream)
            except httpx.TransportError as err:
                delay = self._again_after_failure(request, err, attempt)
            else:
                if response.status_code < 400:
                    return response
                await response.aread()
                await response.aclose()
                delay = self._again_after_answer(request, response, attempt)
            await anyio.sleep(delay)
            attempt += 1

    async def _call(self, request: Request, parse: Callable[[httpx.Response], T]) -> T:
        return parse(await self._send(request))

    async def _open(self, request: Request) -> httpx.Response | None:
        response = await self._send(request, stream=True)
        if response.status_code == 204:
            await response.aclose()
            return None
        return response

    async def _stream(self, request: Request, start: StreamStart) -> AsyncTurnStream | None:
        response = await self._open(request)
        if response is None:
            return None
        return AsyncTurnStream(
            response, self._position(start, response), lambda index: self._open(start.reopen(index))
        )
