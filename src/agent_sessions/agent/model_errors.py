"""A model provider's failure as one readable line: provider, status, the provider's message.

pydantic-ai's ``ModelHTTPError`` says ``status_code: 401, model_name: …, body: {'message': …}``,
a Python repr of the provider's body; a person reading the stream wants
``openai: 401 Unauthorized — Incorrect API key provided``. Each provider nests its message
differently (OpenAI ``{"message"}`` once the SDK took out ``error``, Anthropic and Google
``{"error": {"message"}}``, Mistral a JSON string), so the body is searched, not indexed.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRequestTimeout,
    UnexpectedModelBehavior,
)

MAX_CHARS = 500


def describe(err: BaseException, provider: str) -> str | None:
    """The line for a model's failure, or None when ``err`` is not one (the caller keeps its
    own text for other errors)."""
    if isinstance(err, ModelHTTPError):
        status = _status_text(err.status_code)
        message = body_message(err.body) or err.provider_error_code or ""
        line = f"{provider}: {status}" + (f" — {message}" if message else "")
        if err.suggested_model_id:
            line += f" (did you mean {err.suggested_model_id!r}?)"
    elif isinstance(err, ModelRequestTimeout):
        line = f"{provider}: the model did not answer in time ({err.timeout:g} s)"
    elif isinstance(err, ModelConnectionError):
        cause = err.__cause__
        why = str(cause) if cause is not None and str(cause) else err.message
        line = f"{provider}: could not reach the model — {why}"
    elif isinstance(err, ModelAPIError):
        line = f"{provider}: {body_message(err.body) or err.message}"
    elif isinstance(err, UnexpectedModelBehavior):
        line = f"{provider}: unexpected answer from the model — {err.message}"
    else:
        return None
    return _one_line(line)


def body_message(body: object) -> str | None:
    """The human message inside a provider's error body (dict, JSON text or plain text)."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        text = body.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            return text or None
        return body_message(parsed) if isinstance(parsed, dict | list) else text or None
    if isinstance(body, list):
        for item in body:
            if found := body_message(item):
                return found
        return None
    if not isinstance(body, dict):
        return None
    for key in ("message", "detail", "error_description"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    for key in ("error", "errors", "detail"):
        if key in body and (found := body_message(body[key])):
            return found
    return None


def _status_text(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"
