"""sniffio is told the app's loop is asyncio's, on that loop's thread only (``eventloop``)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import sniffio
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agent_sessions.eventloop import asyncio_named
from tests.conftest import Backend, api_app


def _sniff() -> str | None:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def test_named_on_the_loop_thread_while_it_lasts_and_not_in_worker_threads() -> None:
    async def main() -> tuple[str | None, str | None, str | None]:
        with asyncio_named():
            named = sniffio.thread_local.name
            in_worker = await asyncio.to_thread(_sniff)
        return named, in_worker, sniffio.thread_local.name

    # (the worker does not sniff "asyncio" from a context variable: anyio.run sets one, as
    # TestClient's portal does, but uvicorn runs the loop with asyncio.run)
    assert asyncio.run(main()) == ("asyncio", None, None)
    assert _sniff() is None  # this (test) thread runs no loop


def test_the_app_names_its_loop_for_its_lifespan(backend: Backend) -> None:
    app: FastAPI = api_app(backend)
    seen: dict[str, object] = {}

    @app.get("/probe-sniffio")
    async def probe() -> dict[str, str]:
        seen["loop"] = sniffio.thread_local.name
        seen["thread"] = threading.get_ident()
        return {}

    with TestClient(app) as client:
        assert client.get("/probe-sniffio").status_code == 200
    assert seen["loop"] == "asyncio"
    assert seen["thread"] != threading.get_ident()  # the portal's loop thread, not this one
    assert sniffio.thread_local.name is None  # this thread's was never set


@pytest.mark.parametrize("previous", [None, "trio"])
def test_a_previous_name_comes_back(previous: str | None) -> None:
    sniffio.thread_local.name = previous
    try:
        with asyncio_named():
            assert sniffio.current_async_library() == "asyncio"
        assert sniffio.thread_local.name == previous
    finally:
        sniffio.thread_local.name = None
