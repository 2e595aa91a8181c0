"""Baseline for ``bench/api.py``: a bare Starlette app doing the same one-row SQLite read.

``GET /api/sessions/{sessionId}`` reads the session row by id from the same database file, with
the same PRAGMAs as :mod:`agent_sessions.store.database`, and answers ``{"session": {...}}``.
No auth, no ORM, no Pydantic: what is left is the floor any implementation pays (HTTP, routing,
one indexed read, JSON). Like our sync routes, the read runs in Starlette's threadpool, here on
one plain ``sqlite3`` connection per thread.

Served by :func:`serve` with the same uvicorn settings as ``agent-sessions serve``.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# The same as agent_sessions.store.database._SQLITE_PRAGMAS.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


def create_app(db_path: str) -> Starlette:
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            for pragma in PRAGMAS:
                conn.execute(pragma)
            local.conn = conn
        return conn

    def get_session(request: Request) -> JSONResponse:  # sync: Starlette runs it in a thread
        session_id = request.path_params["sessionId"]
        row = connection().execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return JSONResponse({"status": "error", "error": "Session not found"}, 404)
        session: dict[str, Any] = dict(row)
        return JSONResponse({"session": session})

    return Starlette(routes=[Route("/api/sessions/{sessionId}", get_session)])


def serve(db_path: str, host: str, port: int) -> None:
    """Same ``uvicorn.run`` settings as ``agent-sessions serve`` (see ``agent_sessions.cli``)."""
    uvicorn.run(
        create_app(db_path),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        server_header=False,
        loop="asyncio",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="SQLite database file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.db, args.host, args.port)
