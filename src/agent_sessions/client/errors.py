"""What the client raises: one class per error status, under :class:`ApiError`.

Every error answer of the API has one shape, ``{"status": "error", "error": "…", "path": […]}``
(``path`` only for an invalid field; docs/adr/0003), read here with the server's own model
(``schemas.Error``). A proxy in front of the server may answer in another shape (an HTML 502):
``error`` is then None and ``message`` the body's text. Network failures stay httpx's
(``httpx.TransportError``), so they can be told from the server's answers.
"""

from __future__ import annotations

import email.utils
import time

import httpx
from pydantic import ValidationError

from agent_sessions.api import schemas

__all__ = [
    "ApiError",
    "BadGatewayError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "GatewayTimeoutError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionsError",
    "StreamDropped",
    "UnauthorizedError",
    "UnprocessableEntityError",
    "error_for",
    "retry_after",
]


class SessionsError(Exception):
    """The base of everything this library raises of its own."""


class StreamDropped(SessionsError):
    """A turn's stream was cut and could not be resumed (or an SSE body ended mid-event)."""


class ApiError(SessionsError):
    """An HTTP error answer. ``status``: its code; ``message``: the ``error`` field (or the body's
    text); ``path``: the invalid field's location, if any; ``error``: the whole body, parsed
    with the server's ``Error`` model (None when the body had another shape); ``response``: the
    answer itself (read: its headers and body are there)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.error = _error_body(response)
        if self.error is not None:
            self.message = self.error.error
        else:
            self.message = response.text.strip()[:500] or response.reason_phrase
        self.path = self.error.path if self.error is not None else None
        super().__init__(f"{self.message} (HTTP {self.status})")


class BadRequestError(ApiError):
    """400: malformed JSON or an invalid field (``path`` names it)."""


class UnauthorizedError(ApiError):
    """401: a missing, unknown or revoked API key (or token)."""


class ForbiddenError(ApiError):
    """403: the resource is another account's."""


class NotFoundError(ApiError):
    """404: no such resource."""


class ConflictError(ApiError):
    """409: the request conflicts with the current state (a live turn, an archived session…)."""


class PayloadTooLargeError(ApiError):
    """413: the body is over the server's limit."""


class UnprocessableEntityError(ApiError):
    """422: this API answers 400 for invalid input (ADR 3); a proxy or another server may not."""


class RateLimitedError(ApiError):
    """429: an account limit is reached and nothing was done; ``retry_after`` is in seconds."""

    @property
    def retry_after(self) -> float | None:
        return retry_after(self.response)


class ServerError(ApiError):
    """5xx: the server or something behind it failed."""


class InternalServerError(ServerError):
    """500."""


class BadGatewayError(ServerError):
    """502: an upstream (the sandbox provider, the forge, the model) failed, or a proxy did."""


class ServiceUnavailableError(ServerError):
    """503: usually a proxy or load balancer in front of the server."""


class GatewayTimeoutError(ServerError):
    """504: an upstream timed out."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitedError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def error_for(response: httpx.Response) -> ApiError:
    """The exception for an error answer whose body has been read."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(response)


def _error_body(response: httpx.Response) -> schemas.Error | None:
    try:
        return schemas.Error.model_validate_json(response.content)
    except ValidationError:
        return None


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (it may be a number of seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
