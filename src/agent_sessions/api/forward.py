"""Requests for a session whose local sandbox lives on another host go to that host.

With local sandboxes and several processes on one PostgreSQL database, a session's sandbox is
on the one host (process) that created or restored it; its state names that host
(``lifecycle.hosts``). Whatever touches the sandbox must run there: a turn, a file read, a
hibernation. Any process may receive the request (a load balancer knows nothing of sessions),
so the one that does forwards it, whole and streamed both ways, to the host's advertised URL,
where it is handled as if it had arrived there. Reads that need only the database (the session,
its chats, a turn's stream) are answered where they arrive.

A forwarded request carries :data:`FORWARDED` and is never forwarded again. A host that is
silent (not yet taken over) gets a 503 with ``Retry-After``: within the takeover timeout the
session is moved and the retry succeeds elsewhere.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_sessions.api.errors import error_response
from agent_sessions.settings import Settings
from agent_sessions.store import Database
from agent_sessions.store import hosts as host_store
from agent_sessions.store.models import utcnow

log = logging.getLogger(__name__)

FORWARDED = "x-agent-sessions-forwarded-from"
HOSTS_TTL_SECONDS = 2.0
"""How long the live hosts and their URLs are kept before they are read again."""
_SESSION_PATH = re.compile(r"^/api/sessions/([^/]+)(?:/(.*))?$")
_DATABASE_ONLY = re.compile(r"^(chats(/[^/]+)?(/(read|usage|fork|messages(/.*)?))?)?$")
"""Sub-paths of a session answered from the database alone (the session itself, its chats)."""
_BODY_NAMES_SESSION = frozenset({"/api/chat", "/api/chat/runs", "/api/sandbox"})
_QUERY_NAMES_SESSION = re.compile(r"^/api/sandbox(/.*)?$")
_CORS = (b"access-control-", b"vary")
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"host"}
)


class ForwardToHost:
    """Pure ASGI middleware; active only where sessions can live on other hosts (PostgreSQL
    with local sandboxes), and asks the database nothing while this process is the only
    live host."""

    def __init__(self, app: ASGIApp, settings: Settings, db: Database) -> None:
        self.app = app
        self.db = db
        self.me = settings.executor_id
        self.dead_after = timedelta(seconds=settings.host_dead_after_seconds)
        self._hosts: dict[str, host_store.HostView] = {}
        self._hosts_at = float("-inf")
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        session_id, needs_body = _named_session(scope)
        if (session_id is None and not needs_body) or FORWARDED.encode() in dict(scope["headers"]):
            await self.app(scope, receive, send)
            return
        hosts = await self._live_hosts()
        if not any(h != self.me for h in hosts):  # alone: nothing lives elsewhere
            await self.app(scope, receive, send)
            return
        body: bytes | None = None
        if needs_body:
            body = await _read_body(receive)
            session_id = _session_in_body(body) or session_id
            receive = _replay(body, receive)
        host = await self._host_of(session_id) if session_id else None
        if host is None or host == self.me:
            await self.app(scope, receive, send)
            return
        target = hosts.get(host)
        if target is None or target.url is None:
            retry = int(self.dead_after.total_seconds()) + 5
            response = error_response(
                503,
                f"The host of this session's sandbox ({host}) is not responding; if it does "
                f"not come back, the session moves to another host within {retry} s.",
                headers={"retry-after": str(retry)},
            )
            await response(scope, receive, send)
            return
        await self._forward(scope, receive, send, target.url, body)

    async def _live_hosts(self) -> dict[str, host_store.HostView]:
        if time.monotonic() - self._hosts_at > HOSTS_TTL_SECONDS:
            alive_after = utcnow() - self.dead_after
            self._hosts = await self.db.read_call(
                lambda s: host_store.live(s, alive_after=alive_after)
            )
            self._hosts_at = time.monotonic()
        return self._hosts

    async def _host_of(self, session_id: str) -> str | None:
        return await self.db.read_call(lambda s: host_store.sandbox_host(s, session_id))

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, base: str, body: bytes | None
    ) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=5.0, read=None, write=60.0, pool=10.0)
            )
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        headers.append((FORWARDED.encode(), self.me.encode()))
        url = base.rstrip("/") + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        content: Any = body if body is not None else _stream_body(receive)
        request = self._client.build_request(scope["method"], url, headers=headers, content=content)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as err:
            log.warning("forwarding %s %s to %s failed: %s", scope["method"], url, base, err)
            failed = error_response(
                503,
                "The host of this session's sandbox did not answer; try again shortly.",
                headers={"retry-after": "5"},
            )
            await failed(scope, receive, send)
            return
        try:
            await send({
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [  # CORS headers are this process's to add (the outer middleware)
                    (k, v)
                    for k, v in response.headers.raw
                    if k.lower() not in _HOP_BY_HOP and not k.lower().startswith(_CORS)
                ],
            })  # fmt: skip
            async for piece in response.aiter_raw():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


def _named_session(scope: Scope) -> tuple[str | None, bool]:
    """The session a request names in its path or query, and whether its body may name one."""
    path: str = scope["path"]
    if path in _BODY_NAMES_SESSION and scope["method"] == "POST":
        return None, True
    if _QUERY_NAMES_SESSION.match(path):
        found = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("sessionId")
        return (found[0] if found else None), scope["method"] != "GET"
    match = _SESSION_PATH.match(path)
    if match is None:
        return None, False
    session_id, rest = match.group(1), match.group(2) or ""
    if rest == "" and scope["method"] != "GET":  # an archive or a removal acts on the sandbox
        return session_id, False
    if _DATABASE_ONLY.match(rest):
        return None, False
    return session_id, False


def _session_in_body(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    found = data.get("sessionId") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the connection's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _stream_body(receive: Receive) -> Any:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
