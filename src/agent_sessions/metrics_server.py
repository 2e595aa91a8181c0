"""The metrics of a process that serves no API: ``agent-sessions worker --metrics-port``.

The same registry and the same rules as ``serve``'s ``GET /metrics`` (README, Operating): off
with ``AGENT_SESSIONS_METRICS_ENABLED=false``, behind ``AGENT_SESSIONS_METRICS_TOKEN`` when it
is set, the two database gauges counted at most every few seconds. prometheus_client's own
exposition app and WSGI server answer; they have no bearer token check, so a small WSGI wrapper
adds it (a 401 without the token) rather than leaving a token set but unchecked.
"""

from __future__ import annotations

import hmac
import math
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from agent_sessions import metrics
from agent_sessions.store import Database
from agent_sessions.store import sessions as session_store
from agent_sessions.store import turns as turn_store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from sqlalchemy.orm import Session

    from agent_sessions.settings import Settings

DATABASE_GAUGES_MAX_AGE = 5.0
"""Seconds the database's counts are reused: scrapers in a hurry cost no more queries."""
UNAUTHORIZED = "GET /metrics needs Authorization: Bearer <metrics token>"


class DatabaseGauges:
    """Sessions by state and queued turns (:func:`metrics.set_database_gauges`): two aggregate
    queries, at most every :data:`DATABASE_GAUGES_MAX_AGE` seconds, for ``serve`` and
    ``worker`` alike."""

    def __init__(self) -> None:
        self._counted_at = -math.inf
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether to count now (then the next ones are not due for a while)."""
        with self._lock:
            now = time.monotonic()
            if now - self._counted_at < DATABASE_GAUGES_MAX_AGE:
                return False
            self._counted_at = now
            return True

    @staticmethod
    def count(s: Session) -> None:
        metrics.set_database_gauges(session_store.count_by_state(s), turn_store.count_queued(s))


def bearer_matches(authorization: str, settings: Settings) -> bool:
    """Whether a scrape may read the metrics: no token set, or ``Bearer <token>`` given."""
    token = settings.metrics_token
    if token is None:
        return True
    expected = b"Bearer " + token.get_secret_value().encode()
    return hmac.compare_digest(authorization.encode(), expected)


def metrics_app(settings: Settings, db: Database) -> WSGIApplication:
    """prometheus_client's exposition app behind the metrics token, with the database gauges."""
    exposition = make_wsgi_app(REGISTRY)
    gauges = DatabaseGauges()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not bearer_matches(environ.get("HTTP_AUTHORIZATION", ""), settings):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
            )
            return [UNAUTHORIZED.encode() + b"\n"]
        if gauges.due():
            with db.read() as s:
                gauges.count(s)
        answer: Iterable[bytes] = exposition(environ, start_response)
        return answer

    return app


class _Quiet(WSGIRequestHandler):
    """No line on stderr per scrape (as prometheus_client's own server)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class MetricsServer:
    """:func:`metrics_app` on ``host:port`` in a daemon thread (prometheus_client's threading
    WSGI server), until :meth:`stop`."""

    def __init__(self, settings: Settings, db: Database, host: str, port: int) -> None:
        family = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0][0]
        server = type("Server", (ThreadingWSGIServer,), {"address_family": family})  # IPv6 too
        self._httpd: WSGIServer = make_server(
            host, port, metrics_app(settings, db), server, handler_class=_Quiet
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
