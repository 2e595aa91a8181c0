"""Subprocesses held until reaped, whatever becomes of the coroutine that started them.

DBOS stops its event loop at shutdown with steps suspended mid-call (they run again after a
restart). A coroutine abandoned that way never resumes; without a reference held here, its
``asyncio`` process object would be garbage collected while the process runs, warning of an
unclosed transport wherever the collection happens to fall (in the test suite, inside some
later test). The process itself ends as it would have: with its sandbox, or its timeout.
"""

from __future__ import annotations

import asyncio

__all__ = ["hold"]

_held: set[asyncio.subprocess.Process] = set()


def hold(proc: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    """Keep ``proc`` referenced until its exit is seen; returns it."""
    _held.add(proc)
    reaped = asyncio.ensure_future(proc.wait())
    reaped.add_done_callback(lambda _: _held.discard(proc))
    return proc
