"""Every error leaves as ``{"status": "error", "error": …}`` (validation adds ``path``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent_sessions.exceptions import (
    AgentSessionsError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    UpstreamError,
)

log = logging.getLogger(__name__)

_STATUS: dict[type[AgentSessionsError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    TooManyRequests: 429,
}
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer, ApiKey header="x-api-key"'}


def error_response(
    status_code: int,
    message: str,
    *,
    path: list[str | int] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"status": "error", "error": message}
    if path is not None:
        body["path"] = path
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentSessionsError)
    if isinstance(exc, UpstreamError):
        return error_response(504 if exc.timeout else 502, exc.message)
    if isinstance(exc, TooManyRequests):
        return error_response(429, exc.message, headers={"Retry-After": str(exc.retry_after)})
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
    headers = WWW_AUTHENTICATE if status == 401 else None
    return error_response(status, exc.message, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[str | int]]:
    first = exc.errors()[0]
    loc = [p for p in first.get("loc", ()) if isinstance(p, str | int)]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return f"Malformed JSON body: {detail}".rstrip(": "), ["body"]
    where = ".".join(str(p) for p in loc[1:]) or (str(loc[0]) if loc else "request")
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field"
    if first.get("type") == "missing":
        msg = "is required"
    if loc == ["body"] and isinstance(first.get("input"), bytes):
        return "Request body must be JSON (send Content-Type: application/json)", loc
    return f"Invalid {where}: {msg}", loc


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, path = _describe_validation(exc)
    return error_response(400, message, path=path)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.update(WWW_AUTHENTICATE)
    return error_response(exc.status_code, str(exc.detail), headers=headers or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error")


def install(app: FastAPI) -> None:
    # The handlers are async (they do no I/O) because Starlette runs sync ones in the threadpool.
    app.add_exception_handler(AgentSessionsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
