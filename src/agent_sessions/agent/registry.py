"""Which turns run in this process: one registry, :data:`runs`, that every part asks.

* The ``Turns`` service records the runs it starts here until their workflow ends: each holds
  a worker slot (``AGENT_WORKER_CONCURRENCY``), and a reader of a run here is woken by its
  writes instead of polling the database (:meth:`RunRegistry.here`).
* A turn's workflow registers its ``TurnDeps`` while it runs (a recovered turn too, which no
  ``Turns`` started): a stop requested in this process reaches it at once, and ``_finish``
  finds its sink.
* A turn waiting for the user (``ask_user_question``) may wait for hours; meanwhile it holds
  no slot, or a handful of open questions would stop every other chat of the process. When one
  starts waiting, the listeners (the ``Turns`` services that start waiting turns) are told.
  With a global limit, turns go through the DBOS queue, which counts a waiting turn like any
  other: there the wait does hold its slot.
* A stop requested through another process is noticed by one poller: while any turn runs
  here it asks, every :data:`STOP_POLL_SECONDS`, which of them have a stop requested, in one
  query for all of them. Each turn used to poll for itself: at 100 turns, ~670 queries a
  second.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from agent_sessions import metrics
from agent_sessions.lifecycle.context import current
from agent_sessions.store import turns as store

if TYPE_CHECKING:
    from agent_sessions.agent.deps import TurnDeps

_log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.15
"""How soon a turn here notices a stop recorded by another process."""


class RunRegistry:
    def __init__(self) -> None:
        self._started: set[str] = set()  # started here by ``Turns``, workflow not ended yet
        self._running: dict[str, TurnDeps] = {}  # turns whose workflow runs here now
        self._paused: set[str] = set()  # of those, the ones waiting for the user
        self._listeners: list[weakref.WeakMethod[Callable[[], Coroutine[Any, Any, None]]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None

    # --- asked by the Turns service ----------------------------------------------------------

    def started(self, run_id: str) -> None:
        """``Turns`` starts the run's workflow here: it holds a slot until :meth:`ended`."""
        self._started.add(run_id)

    def ended(self, run_id: str) -> None:
        self._started.discard(run_id)

    def here(self, run_id: str) -> bool:
        """Whether the run's turn runs in this process (or is about to)."""
        return run_id in self._started or run_id in self._running

    def holding_slots(self) -> set[str]:
        """Runs of this process that count against the worker limit: not those waiting for
        the user."""
        return (self._started | self._running.keys()) - self._paused

    def signal_stop(self, run_id: str) -> None:
        """Stop the run's turn now if it runs here (the caller recorded the stop)."""
        deps = self._running.get(run_id)
        if deps is not None:
            deps.stopped.set()

    def on_slot_freed(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Call ``callback`` (a bound method, held weakly) when a turn starts waiting."""
        self._listeners.append(weakref.WeakMethod(callback))

    # --- asked by the turn -------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, deps: TurnDeps) -> Iterator[None]:
        """The turn of ``deps.run_id`` runs here meanwhile; a stop recorded elsewhere sets
        ``deps.stopped``."""
        self._running[deps.run_id] = deps
        self._watch_stops()
        try:
            yield
        finally:
            if self._running.get(deps.run_id) is deps:
                del self._running[deps.run_id]

    def deps(self, run_id: str) -> TurnDeps | None:
        return self._running.get(run_id)

    @contextlib.contextmanager
    def paused(self, run_id: str) -> Iterator[None]:
        """The run waits for the user meanwhile: its slot is free for another turn.

        The listeners run in a fresh context: this is workflow code, and a turn started from
        the workflow's own context would be recorded as its child.
        """
        self._paused.add(run_id)
        for ref in list(self._listeners):
            callback = ref()
            if callback is None:
                self._listeners.remove(ref)
            else:
                self._spawn(callback(), "could not start a waiting turn")
        try:
            yield
        finally:
            self._paused.discard(run_id)

    @property
    def polling(self) -> bool:
        """Whether the stop poller runs (it does exactly while a turn runs here)."""
        return self._poller is not None and not self._poller.done()

    def clear(self) -> None:
        """Forget everything (the process's DBOS has stopped: none of its turns runs on)."""
        if self._poller is not None:
            self._poller.cancel()
        self._poller = None
        self._started.clear()
        self._running.clear()
        self._paused.clear()

    # --- the stop poller ---------------------------------------------------------------------

    def _watch_stops(self) -> None:
        poller, loop = self._poller, asyncio.get_running_loop()
        if poller is not None and not poller.done() and poller.get_loop() is loop:
            return
        self._poller = self._spawn(self._poll_stops(), "the stop poller failed")

    async def _poll_stops(self) -> None:
        """While turns run here, read which have a stop requested; ends when none runs."""
        try:
            while self._running:
                await asyncio.sleep(STOP_POLL_SECONDS)
                ids = [r for r, d in self._running.items() if not d.stopped.is_set()]
                if not ids:
                    continue
                try:
                    stop = await current().db.read_call(
                        functools.partial(store.stops_requested, run_ids=ids)
                    )
                except Exception as err:  # the database is away: the next poll tries again
                    _log.warning("could not read the turns' stop requests: %s", err)
                    continue
                for run_id in stop:
                    self.signal_stop(run_id)
        finally:
            if self._poller is asyncio.current_task():
                self._poller = None

    def _spawn(self, work: Coroutine[Any, Any, None], failure: str) -> asyncio.Task[None]:
        """Run ``work`` in a fresh context (not the workflow's), logging its failure."""
        task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                _log.error(failure, exc_info=task.exception())

        task.add_done_callback(done)
        return task


runs = RunRegistry()
"""The process's registry."""
metrics.TURNS_RUNNING.set_function(lambda: len(runs._running))  # read at scrape time only
