"""Pure ASGI middleware (no per-request task hop, unlike ``BaseHTTPMiddleware``)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_sessions import metrics

ALLOWED_HEADERS = "authorization, content-type, x-api-key, last-event-id"
EXPOSED_HEADERS = (
    "x-workflow-run-id, x-vercel-ai-ui-message-stream, x-workflow-stream-tail-index, retry-after"
)


class CORSMiddleware:
    """Answers every preflight ``OPTIONS`` with 200 (the HTTP contract) and tags responses for
    browsers.

    Credentials travel in headers, never cookies, so no ``Allow-Credentials`` is sent.
    """

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def _allow(self, origin: str | None) -> str | None:
        if origin is None:
            return "*" if self.any_origin else None
        if self.any_origin or origin in self.origins:
            return "*" if self.any_origin else origin
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        allow = self._allow(headers.get("origin"))
        if scope["method"] == "OPTIONS":
            out = [(b"content-length", b"0"), (b"vary", b"Origin")]
            if allow is not None:
                out += [
                    (b"access-control-allow-origin", allow.encode()),
                    (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
                    (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                    (b"access-control-max-age", b"600"),
                ]
            await send({"type": "http.response.start", "status": 200, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            return
        if allow is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", allow.encode()),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit; FastAPI re-raises HTTPExceptions
    met while reading a body, so it reaches our error handler as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large (limit {limit} bytes)")


BodyLimit = tuple[str, re.Pattern[str], int]
"""``(method, path pattern, limit)``: a route whose bodies may be larger (an upload)."""


class BodyLimitMiddleware:
    """Refuses bodies above the limit: a declared ``Content-Length`` before any route runs,
    a chunked body as soon as the running count passes the limit. ``larger`` names the few
    routes with a limit of their own (uploads); every other route keeps ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, larger: Sequence[BodyLimit] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.larger = tuple(larger)

    def _limit(self, scope: Scope) -> int:
        for method, pattern, limit in self.larger:
            if scope["method"] == method and pattern.fullmatch(scope["path"]):
                return limit
        return self.max_body_bytes

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = json.dumps({"status": "error", "error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is None and "transfer-encoding" not in headers:
            # Neither header: HTTP/1.1 says there is no body (most GETs). Nothing to count.
            await self.app(scope, receive, send)
            return
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(send, 400, "Invalid Content-Length header")
                return
            if int(declared) > limit:
                await self._refuse(send, 413, BodyTooLarge(limit).detail)
                return
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await self._refuse(send, 413, exc.detail)


UNMATCHED = "unmatched"
"""The route label of a request no route took (a 404, a CORS preflight)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as they are; any other is ``OTHER`` (a client picks it)."""
access_log = logging.getLogger("agent_sessions.access")


class RequestMetrics:
    """Counts and times every HTTP request by route template, method and status
    (``agent_sessions_http_*``), and writes the access log when it is on.

    The latency is to the response's headers, so an SSE stream counts its time to the first
    byte, not its length. The route is the template that matched (``/api/sessions/{sessionId}``),
    never the raw path, so the labels stay few. Per request: two clock reads and two updates
    of children cached by label (``labels()`` itself takes a lock and builds a tuple)."""

    def __init__(self, app: ASGIApp, access: bool = False) -> None:
        self.app = app
        self.access = access
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # no response started: the server answers 500
        seconds: float | None = None

        async def observing_send(message: Message) -> None:
            nonlocal status, seconds
            if message["type"] == "http.response.start":
                status = message["status"]
                seconds = time.perf_counter() - started
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            if seconds is None:
                seconds = time.perf_counter() - started
            self._observe(scope, status, seconds)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or UNMATCHED
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        key = (template, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = metrics.HTTP_REQUESTS.labels(*key)
        counter.inc()
        timer = self._timers.get(key[:2])
        if timer is None:
            timer = self._timers[key[:2]] = metrics.HTTP_LATENCY.labels(template, method)
        timer.observe(seconds)
        if self.access:
            access_log.info("%s %s %d %.1f ms", method, scope["path"], status, seconds * 1000)
