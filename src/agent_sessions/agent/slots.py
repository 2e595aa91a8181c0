"""Which of this process's turns hold a worker slot (``AGENT_WORKER_CONCURRENCY``).

A turn waiting for the user (``ask_user_question``) may wait for hours; while it waits it holds
no slot, or a handful of open questions would stop every other chat of the process. When a
turn starts waiting, the listeners (the ``Turns`` services that start waiting turns) are told.
With a global limit, turns go through the DBOS queue, which counts a waiting turn like any
other: there the wait does hold its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

_log = logging.getLogger(__name__)
_paused: set[str] = set()
_listeners: list[weakref.WeakMethod[Callable[[], Coroutine[Any, Any, None]]]] = []
_tasks: set[asyncio.Task[Any]] = set()


def paused_runs() -> set[str]:
    """Runs of this process waiting for the user."""
    return set(_paused)


def on_slot_freed(callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Call ``callback`` (a bound method, held weakly) when a turn starts waiting."""
    _listeners.append(weakref.WeakMethod(callback))


@contextlib.contextmanager
def paused(run_id: str) -> Iterator[None]:
    """The run waits for the user meanwhile: its slot is free for another turn.

    The listeners run in a fresh context: this is workflow code, and a turn started from the
    workflow's own context would be recorded as its child.
    """
    _paused.add(run_id)
    for ref in list(_listeners):
        callback = ref()
        if callback is None:
            _listeners.remove(ref)
        else:
            task = asyncio.get_running_loop().create_task(callback(), context=contextvars.Context())
            _tasks.add(task)
            task.add_done_callback(_done)
    try:
        yield
    finally:
        _paused.discard(run_id)


def _done(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.error("could not start a waiting turn", exc_info=task.exception())
