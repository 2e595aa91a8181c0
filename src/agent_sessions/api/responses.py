"""OpenAPI ``responses=`` entries for error codes, all with the ``Error`` schema."""

from __future__ import annotations

from typing import Any

from agent_sessions.api.schemas import Error

DESCRIPTIONS = {
    400: "Bad request - malformed JSON or an invalid field",
    401: "Unauthorized - invalid or missing API key / Bearer token",
    403: "Forbidden - the authenticated account does not own this resource",
    404: "Not found - no such resource",
    409: "Conflict - the request conflicts with the current state",
    413: "Content too large - the request body exceeds the configured limit",
    429: "Too many requests - an account limit is reached; retry after Retry-After seconds",
    502: "Bad gateway - an upstream (sandbox provider, model) failed",
    504: "Gateway timeout - an upstream timed out",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error, "description": DESCRIPTIONS[code]} for code in codes}
