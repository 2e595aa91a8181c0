"""When a request is sent again, and how a turn's stream resumes (:class:`RetryPolicy`)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from agent_sessions.client.errors import retry_after

__all__ = ["NO_RETRY", "RetryPolicy"]

NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before the request left: sending it again cannot make it act twice."""


@dataclass(frozen=True)
class RetryPolicy:
    """Answers in ``statuses`` (429, 502, 503) are retried up to ``max_retries`` times, after the
    answer's ``Retry-After`` when it has one, else after an exponential backoff with jitter:
    ``backoff * 2**n`` seconds (at most ``max_backoff``) times a random factor in [0.5, 1]. A
    ``Retry-After`` longer than ``max_retry_after`` is not waited out: the error is raised at
    once, for the caller to decide.

    Which requests are sent again, so that none acts twice:

    * on **429**, every request: the API answers 429 before acting (the write rate is checked
      before the route runs, the account's quotas inside a transaction that is rolled back);
    * on **502, 503** or a connection lost mid-request, only the requests that are safe to
      repeat: reads, ``PUT``, ``DELETE`` and ``PATCH`` (they set a state, the same twice as
      once), and the ``POST`` s the API makes idempotent (a chat created with its id, marking
      read, stopping a turn, resuming or hibernating a sandbox, storing a message of an id,
      pushing, opening the branch's pull request…: each route says). Starting a turn, a run
      or a session, committing, merging are never repeated: the first one may have acted;
    * a connection that could not be made is retried for every request (nothing was sent).

    A turn's stream is a different matter: a dropped stream is resumed from the index of the
    next chunk (nothing is sent twice), up to ``stream_resumes`` times in a row, after
    ``resume_backoff * 2**n`` seconds (at most 4).
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    statuses: frozenset[int] = frozenset({429, 502, 503})
    stream_resumes: int = 5
    resume_backoff: float = 0.25

    def delay(self, attempt: int, wait: float | None = None) -> float | None:
        """Seconds before try ``attempt + 1`` (``attempt`` 0: the first retry), or None to give
        up; ``wait`` is the answer's ``Retry-After``."""
        if attempt >= self.max_retries:
            return None
        if wait is not None:
            return wait if wait <= self.max_retry_after else None
        return min(self.max_backoff, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)

    def after_answer(self, response: httpx.Response, attempt: int, safe: bool) -> float | None:
        status = response.status_code
        if status not in self.statuses or (status != 429 and not safe):
            return None
        return self.delay(attempt, retry_after(response))

    def after_failure(self, error: httpx.TransportError, attempt: int, safe: bool) -> float | None:
        if not safe and not isinstance(error, NOTHING_SENT):
            return None
        return self.delay(attempt)

    def resume_delay(self, failures: int) -> float:
        return min(self.resume_backoff * 2.0**failures, 4.0)


NO_RETRY = RetryPolicy(max_retries=0)
"""Every error raised at once (a dropped stream is still resumed)."""
