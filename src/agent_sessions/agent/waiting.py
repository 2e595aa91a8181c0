"""Turns waiting in this process for a worker slot, started round robin by account.

First come, first served let one account's backlog delay everyone: nine long turns of one
account held back another account's one-line question for the length of all nine. Here each
account has its own line (first in, first out), and a free slot goes to the account that
started a turn here least recently; an account with nothing started here yet goes first, and
among equals the turn that has waited longest. With every account busy that is a plain
rotation; an account that comes along meanwhile waits for at most one slot to free.

An account is remembered while it has turns waiting or running here; once it has neither it
is forgotten, and counts as new when it comes back.
"""

from __future__ import annotations

import collections
import itertools


class WaitingTurns:
    def __init__(self) -> None:
        self._lines: dict[str, collections.deque[tuple[int, str]]] = {}
        self._waiting: dict[str, str] = {}  # run → account
        self._running: collections.Counter[str] = collections.Counter()  # account → runs
        self._started: dict[str, int] = {}  # account → tick of its latest start here
        self._account_of: dict[str, str] = {}  # run → account, while it runs
        self._ticks = itertools.count()

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._waiting

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def push(self, account_id: str, run_id: str) -> None:
        self._lines.setdefault(account_id, collections.deque()).append((next(self._ticks), run_id))
        self._waiting[run_id] = account_id

    def pop(self) -> str:
        """The next turn to start (there must be one); it counts as running until
        :meth:`done`."""
        account_id = min(
            self._lines,
            key=lambda a: (self._started.get(a, -1), self._lines[a][0][0]),
        )
        line = self._lines[account_id]
        _, run_id = line.popleft()
        if not line:
            del self._lines[account_id]
        del self._waiting[run_id]
        self._started[account_id] = next(self._ticks)
        self._running[account_id] += 1
        self._account_of[run_id] = account_id
        return run_id

    def done(self, run_id: str) -> None:
        """The turn started by :meth:`pop` has ended (or could not start)."""
        account_id = self._account_of.pop(run_id, None)
        if account_id is None:
            return
        self._running[account_id] -= 1
        if self._running[account_id] <= 0:
            del self._running[account_id]
            if account_id not in self._lines:
                self._started.pop(account_id, None)
