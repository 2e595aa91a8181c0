"""The write rate of each account (``AGENT_SESSIONS_ACCOUNT_WRITES_PER_MINUTE``), in process.

A token bucket per account that holds a minute's worth of requests and refills evenly, kept as
GCRA (the generic cell rate algorithm) does: one number per account, the time at which its
bucket would be full again. A request is let through when taking a token leaves that time at
most a minute ahead; else the answer is 429 with the seconds until the next token.

In memory, so with several processes each one counts only the requests it serves (the
session and turn limits, counted in the database, are the exact ones). It is consulted on the
event loop only, so it needs no lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from agent_sessions.exceptions import TooManyRequests

WINDOW_SECONDS = 60.0
PRUNE_AT = 10_000
"""Accounts remembered before the ones whose bucket is full again are forgotten."""
_EPSILON = 1e-9  # sixty requests of 1/60 min each add up to a hair over a minute in floats


class WriteRate:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._interval = WINDOW_SECONDS / per_minute if per_minute else 0.0
        self._full_at: dict[str, float] = {}
        self._prune_at = PRUNE_AT
        self._clock = clock

    def take(self, account_id: str) -> None:
        """Take one token of the account's bucket, or raise :class:`TooManyRequests`."""
        if not self.per_minute:
            return
        now = self._clock()
        full_at = max(self._full_at.get(account_id, now), now) + self._interval
        wait = full_at - WINDOW_SECONDS - now
        if wait > _EPSILON:
            raise TooManyRequests(
                f"Too many write requests: an account may make {self.per_minute} a minute "
                "(AGENT_SESSIONS_ACCOUNT_WRITES_PER_MINUTE)",
                retry_after=math.ceil(wait),
            )
        self._full_at[account_id] = full_at
        if len(self._full_at) > self._prune_at:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget the accounts whose bucket is full again (the same as never seen)."""
        self._full_at = {a: t for a, t in self._full_at.items() if t > now}
        self._prune_at = max(PRUNE_AT, 2 * len(self._full_at))
