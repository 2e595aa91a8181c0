"""Baseline for ``bench/capacity.py``: a bare relay of the model's stream, the floor of a chat.

``POST /api/chat`` streams ``stream`` from the model (one shared ``httpx.AsyncClient``), turns
each delta into AI SDK UI message chunks (``start``, ``text-start``, ``text-delta``,
``text-end``, ``finish``, ``[DONE]``) forwarded over SSE at once, and hands every chunk to one
writer task that appends all streams' chunks to one table every 20 ms, one transaction per
batch, on one connection in one thread (SQLite with the service's PRAGMAs, or PostgreSQL with
psycopg). No auth, no ORM, no durable workflow, no sandbox: what is left is what any
implementation pays to relay and keep a reply.

Served with the same uvicorn settings as ``agent-sessions serve``.

    python bench/_relay_baseline.py --port P --model-url http://127.0.0.1:M/v1
        (--sqlite FILE | --postgres URL)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

# The same as agent_sessions.store.database._SQLITE_PRAGMAS.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)
BATCH_SECONDS = 0.02
HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "cache-control": "no-cache"}
Row = tuple[str, int, str]


class Writer:
    """Appends every stream's chunks in batches: one thread, one connection, one transaction
    per batch (the relay forwards without waiting for it, as a reader of the live stream
    would not wait either)."""

    def __init__(self, sqlite_path: str | None, postgres_url: str | None) -> None:
        self.pending: list[Row] = []
        self.batches = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._write: Callable[[list[Row]], None]
        if sqlite_path:
            self._thread.submit(self._open_sqlite, sqlite_path).result()
        else:
            assert postgres_url
            self._thread.submit(self._open_postgres, postgres_url).result()

    def _open_sqlite(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS chunks"
            " (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, seq INTEGER NOT NULL, chunk TEXT)"
        )

        def write(rows: list[Row]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO chunks (stream, seq, chunk) VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")

        self._write = write

    def _open_postgres(self, url: str) -> None:
        conn = psycopg.connect(url)
        with conn.transaction():
            conn.execute(
                "CREATE TABLE IF NOT EXISTS chunks (id BIGSERIAL PRIMARY KEY,"
                " stream TEXT NOT NULL, seq INTEGER NOT NULL, chunk TEXT)"
            )

        def write(rows: list[Row]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany("INSERT INTO chunks (stream, seq, chunk) VALUES (%s, %s, %s)", rows)

        self._write = write

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(BATCH_SECONDS)
            if self.pending:
                batch, self.pending = self.pending, []
                await loop.run_in_executor(self._thread, self._write, batch)
                self.batches += 1


def create_app(model_url: str, writer: Writer) -> Starlette:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    http = httpx.AsyncClient(timeout=300, limits=limits)

    async def chat(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        model = str(body.get("model", "stream")).removeprefix("openai/")
        stream_id = uuid.uuid4().hex
        return StreamingResponse(
            relay(stream_id, model), media_type="text/event-stream", headers=HEADERS
        )

    async def relay(stream_id: str, model: str) -> AsyncIterator[bytes]:
        seq = 0

        def emit(chunk: dict[str, Any]) -> bytes:
            nonlocal seq
            data = json.dumps(chunk, separators=(",", ":"))
            writer.pending.append((stream_id, seq, data))
            seq += 1
            return f"data: {data}\n\n".encode()

        yield emit({"type": "start", "messageId": f"msg-{stream_id}"})
        text_started = False
        request = {"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}
        async with http.stream("POST", f"{model_url}/chat/completions", json=request) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    break
                for choice in json.loads(data).get("choices", ()):
                    content = choice.get("delta", {}).get("content")
                    if not content:
                        continue
                    if not text_started:
                        text_started = True
                        yield emit({"type": "text-start", "id": "t0"})
                    yield emit({"type": "text-delta", "id": "t0", "delta": content})
        if text_started:
            yield emit({"type": "text-end", "id": "t0"})
        yield emit({"type": "finish", "finishReason": "stop"})
        yield b"data: [DONE]\n\n"

    async def healthz(request: Request) -> Response:
        return Response("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(writer.run())
        try:
            yield
        finally:
            task.cancel()
            await http.aclose()

    return Starlette(
        routes=[Route("/api/chat", chat, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-url", required=True, help="the model's base URL (…/v1)")
    db = parser.add_mutually_exclusive_group(required=True)
    db.add_argument("--sqlite", help="SQLite database file")
    db.add_argument("--postgres", help="PostgreSQL URL")
    args = parser.parse_args()
    writer = Writer(args.sqlite, args.postgres)
    # Same uvicorn.run settings as `agent-sessions serve` (agent_sessions.cli).
    uvicorn.run(
        create_app(args.model_url, writer),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        server_header=False,
        loop="asyncio",
    )


if __name__ == "__main__":
    main()
