"""How the Vercel provider reads the SDK's failures: which ones a retry can fix, and which of
our sandbox errors each one becomes (the table is in docs/vercel-provider.md).

The SDK (``vercel-sandbox`` 0.10) retries little on its own: it resumes a stopped session
once, follows a broken command stream through ``cmd/{id}/logs``, and polls a command's exit
twice more; every other request fails at the first 429, 5xx, timeout or dropped connection,
and ``httpx2`` transport errors come out as they are. :func:`retrying` adds what Vercel's own
TypeScript SDK does for every request (``with-retry.ts``: bounded retries with backoff on
network errors, 429 and 5xx, ``Retry-After`` honoured up to 20 s), but only where a second try
cannot run something twice, and waits out a sandbox that is still stopping or snapshotting.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import httpx2
from vercel.errors import VercelError
from vercel.sandbox import (
    SandboxApiError,
    SandboxCredentialsError,
    SandboxFilesystemWriteError,
    SandboxPathNotFoundError,
    SandboxResponseError,
    SandboxStreamError,
)

from agent_sessions.sandbox.errors import (
    PathNotFound,
    SandboxAuthError,
    SandboxError,
    SandboxNotFound,
    SandboxRejected,
    SandboxUnavailable,
)

__all__ = ["TRANSITIONS", "RetryPolicy", "classify", "retrying", "translate"]

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSITIONS = {"sandbox_stopping": "stopping", "sandbox_snapshotting": "snapshotting"}
"""Error codes of a session on its way down (422, ``recovery.py`` of the SDK) → state."""
_STREAM_CLOSED = "sandbox_stream_closed"

Retry = Literal["refused", "lost", "transition"]
"""``refused``: Vercel did not act on the request (429, 5xx, 410, or it never reached Vercel):
any call may be sent again. ``lost``: the answer was lost (a timeout, a dropped connection, a
cut stream): only a call that does no harm twice may be. ``transition``: the session is
stopping or snapshotting; wait until it has stopped, then send again (the SDK resumes it)."""
Missing = Literal["sandbox", "path", "command"]
"""What a 404 means for the call that got it."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of :func:`retrying`."""

    attempts: int = 4
    """Tries in all for a ``refused`` or ``lost`` failure."""
    base_delay: float = 0.5
    """First backoff (seconds); doubled at each try, with jitter, up to ``max_delay``."""
    max_delay: float = 8.0
    max_retry_after: float = 20.0
    """A 429 asking to wait longer than this is not waited for (as Vercel's TypeScript SDK)."""
    transition_timeout: float = 120.0
    """How long a call waits for a stopping or snapshotting sandbox to finish stopping."""
    poll_interval: float = 0.5
    """How often it looks meanwhile (the SDKs poll every 0.5 s too)."""

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(base * (0.5 + random.random() / 2))


_SDK_ERRORS = (VercelError, httpx2.HTTPError, httpx2.StreamError)
"""What the SDK raises: its own errors and ``httpx2``'s, which it lets through."""


def _leaf(error: Exception) -> BaseException:
    """The first error inside an exception group (the SDK streams uploads from a task group)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        first = error.exceptions[0]
        if not isinstance(first, Exception):
            return first
        error = first
    return error


def _api_error(error: BaseException) -> SandboxApiError | None:
    if isinstance(error, SandboxApiError):
        return error
    cause = getattr(error, "cause", None)
    if isinstance(error, SandboxFilesystemWriteError | SandboxPathNotFoundError) and isinstance(
        cause, SandboxApiError
    ):
        return cause
    return None


def classify(error: BaseException) -> Retry | None:
    """Whether, and how, a call that failed with ``error`` may be tried again."""
    if isinstance(error, SandboxPathNotFoundError):
        return None
    api = _api_error(error)
    if api is not None:
        if api.code in TRANSITIONS:
            return "transition"
        if api.code == _STREAM_CLOSED:
            return "lost"
        if api.status_code in (410, 429) or api.status_code >= 500:
            return "refused"
        return None
    if isinstance(error, SandboxStreamError):
        # In-band, once a command runs: it may have done part of its work.
        return "lost" if error.code in (*TRANSITIONS, _STREAM_CLOSED, "sandbox_stopped") else None
    if isinstance(error, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return "refused"  # the request never left
    if isinstance(error, httpx2.TransportError | SandboxResponseError):
        return "lost"  # includes a stream cut in the middle of a record
    return None


def retry_after(error: BaseException) -> float | None:
    """Seconds a 429's ``Retry-After`` asks for (delta or HTTP date), if it says."""
    api = _api_error(error)
    value = api.response.headers.get("retry-after") if api is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def translate(error: BaseException, what: str, missing: Missing, name: str) -> SandboxError:
    """Our error for an SDK or transport failure of ``what`` (on sandbox ``name``)."""
    if isinstance(error, SandboxPathNotFoundError):
        return PathNotFound("no such path in the workspace")
    if isinstance(error, SandboxCredentialsError):
        return SandboxAuthError(
            "Vercel credentials are missing: set VERCEL_TOKEN, VERCEL_TEAM_ID and "
            "VERCEL_PROJECT_ID, or run where VERCEL_OIDC_TOKEN is provided"
        )
    api = _api_error(error)
    if api is not None:
        status, detail = api.status_code, str(api)[:300]
        if status in (401, 403):
            return SandboxAuthError(f"Vercel refused the credentials for {what} ({detail})")
        if status == 404 and missing == "sandbox":
            return SandboxNotFound(f"Vercel sandbox {name!r} does not exist")
        if status == 404 and missing == "path":
            return PathNotFound(f"not found in the Vercel sandbox: {detail}")
        if status == 404:
            return SandboxNotFound(f"Vercel lost {what} in sandbox {name!r} ({detail})")
        if api.code in TRANSITIONS:
            state = TRANSITIONS[api.code]
            return SandboxUnavailable(f"Vercel sandbox {name!r} is {state}; try again shortly")
        if status == 429:
            return SandboxUnavailable(f"Vercel's rate limit stopped {what}: {detail}")
        if status >= 500 or status == 410:
            return SandboxUnavailable(f"Vercel failed {what}: {detail}")
        return SandboxRejected(f"Vercel refused {what}: {detail}")
    if isinstance(error, httpx2.TimeoutException):
        return SandboxUnavailable(f"Vercel did not answer {what} in time", timeout=True)
    if isinstance(error, httpx2.HTTPError):
        return SandboxUnavailable(f"Vercel could not be reached for {what}: {error!r}"[:400])
    return SandboxUnavailable(f"Vercel sandbox request failed ({what}): {error}"[:400])


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    name: str,
    policy: RetryPolicy,
    idempotent: bool,
    missing: Missing = "path",
    wait_stopped: Callable[[float], Awaitable[None]] | None = None,
    ran: Callable[[], bool] | None = None,
    also_retry: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``call`` (a fresh SDK call each time), trying again while :func:`classify` allows.

    ``idempotent`` calls are retried after ``lost`` failures too; the others only when Vercel
    refused them, and never once ``ran()`` says the command started. ``wait_stopped(deadline)``
    waits (until the monotonic ``deadline``) for a stopping or snapshotting sandbox to stop.
    Whatever fails for good comes out as one of our errors (:func:`translate`).
    """
    attempt = 1
    deadline: float | None = None
    while True:
        try:
            return await call()
        except SandboxError:
            raise
        except Exception as raised:
            error = _leaf(raised)
            if not isinstance(error, _SDK_ERRORS):
                raise
            kind = classify(error)
            if also_retry is not None and kind is None and also_retry(error):
                kind = "refused"
            started = ran is not None and ran()
            safe = kind in ("refused", "transition") or (kind == "lost" and idempotent)
            if started and not idempotent:
                safe = False
            if safe and kind == "transition" and wait_stopped is not None:
                if deadline is None:
                    deadline = time.monotonic() + policy.transition_timeout
                await wait_stopped(deadline)
                continue
            if not safe or attempt >= policy.attempts:
                raise translate(error, what, missing, name) from None
            delay = policy.delay(attempt)
            asked = retry_after(error)
            if asked is not None:
                if asked > policy.max_retry_after:
                    raise translate(error, what, missing, name) from None
                delay = max(delay, asked)
            log.info("Vercel %s failed (try %d): %s; again in %.1f s", what, attempt, error, delay)
            await asyncio.sleep(delay)
            attempt += 1
