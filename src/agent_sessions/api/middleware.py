"""Pure ASGI middleware (no per-request task hop, unlike ``BaseHTTPMiddleware``)."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_HEADERS = "authorization, content-type, x-api-key, last-event-id"
EXPOSED_HEADERS = "x-workflow-run-id, x-vercel-ai-ui-message-stream, x-workflow-stream-tail-index"


class CORSMiddleware:
    """Answers every preflight ``OPTIONS`` with 200 (DESIGN §3) and tags responses for browsers.

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


class ContentLengthLimitMiddleware:
    """Refuses a declared ``Content-Length`` above the limit before any route runs.

    Bodies without a length (chunked) are counted by FastAPI's own ``max_body_size``.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
                too_large = declared.isdigit()
                status = 413 if too_large else 400
                msg = (
                    f"Request body too large (limit {self.max_body_bytes} bytes)"
                    if too_large
                    else "Invalid Content-Length header"
                )
                body = json.dumps({"status": "error", "error": msg}).encode()
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
                return
        await self.app(scope, receive, send)
