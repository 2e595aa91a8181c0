"""Tell ``sniffio`` once, on the event loop's thread, that the loop is asyncio's.

anyio asks ``sniffio.current_async_library()`` on nearly every operation (each checkpoint,
lock, task group and stream of pydantic-ai and the HTTP clients), and without a hint sniffio
finds the answer through ``asyncio.current_task()``, which on CPython 3.11 makes a ``getpid``
system call each time. In an agent step that was hundreds of calls, ~2% of the server's CPU
(py-spy, ``bench/agent.py``). sniffio checks its thread-local first; it is set on the loop's
thread only, so worker threads still sniff, and correctly find no async library.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sniffio


@contextlib.contextmanager
def asyncio_named() -> Iterator[None]:
    """While the app runs (its lifespan, on the loop's thread): sniffio answers at once."""
    previous, sniffio.thread_local.name = sniffio.thread_local.name, "asyncio"
    try:
        yield
    finally:
        sniffio.thread_local.name = previous
