"""The error tree. Lower layers raise these; only ``api/`` turns them into HTTP responses."""

from __future__ import annotations


class AgentSessionsError(Exception):
    """Base of every error this package raises on purpose."""

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(AgentSessionsError):
    """The resource does not exist (or is not visible through the given parent)."""


class Forbidden(AgentSessionsError):
    """The caller is authenticated but does not own the resource."""


class Unauthorized(AgentSessionsError):
    """Missing, malformed, revoked or conflicting credentials."""


class Conflict(AgentSessionsError):
    """The request conflicts with the current state (a version, a live turn, an id)."""


class InvalidInput(AgentSessionsError):
    """Input that passed schema validation but breaks a rule of the domain."""


class TooLarge(AgentSessionsError):
    """Something is bigger than the limit that keeps one request's memory bounded."""


class TooManyRequests(AgentSessionsError):
    """An account limit is reached (a quota or the write rate); ``retry_after`` is the number
    of seconds after which the same request may succeed."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class UpstreamError(AgentSessionsError):
    """A sandbox provider or model failed; ``timeout`` tells 504 from 502."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class DatabaseUnavailable(AgentSessionsError):
    """The database cannot be reached, or does not exist (an operator's fix, not a caller's)."""
