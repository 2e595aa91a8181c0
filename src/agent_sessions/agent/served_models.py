"""What an OpenAI-compatible endpoint says it serves (``GET …/models``), kept for a while.

A local server (Ollama, vLLM, llama.cpp) serves whatever its operator loaded, under names no
table here can know; its own list lets a client pick ``openai/<served name>`` without guessing.
``GET /api/models`` must not become as slow or as fragile as the slowest endpoint, so a listing
is cached (an endpoint that did not answer for less long: it may be starting), the request has
a short timeout, and a failure is a line of text, never an error of the listing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import httpx2

TIMEOUT_SECONDS = 3.0
MAX_NAMES = 1000
"""A router can serve hundreds of models; past this many the rest are left out."""


@dataclass(frozen=True)
class Served:
    names: tuple[str, ...]
    error: str | None = None
    """Why the endpoint gave no list (it is then empty); None when it answered."""


_cache: dict[tuple[str, str], tuple[float, Served]] = {}


async def served(url: str, api_key: str, ttl_seconds: float) -> Served:
    """The model names ``url`` lists (OpenAI's ``{"data": [{"id": …}]}``), asked with the key
    at most once per ``ttl_seconds`` (a tenth of it after a failure)."""
    key = (url, hashlib.sha256(api_key.encode()).hexdigest())
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    result = await _fetch(url, api_key)
    keep = ttl_seconds if result.error is None else ttl_seconds / 10
    if keep > 0:
        _cache[key] = (now + keep, result)
    return result


def forget() -> None:
    """Drop every cached listing (tests; an operator who changed an endpoint restarts)."""
    _cache.clear()


async def _fetch(url: str, api_key: str) -> Served:
    headers = {"authorization": f"Bearer {api_key}", "accept": "application/json"}
    try:
        async with httpx2.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = await client.get(url, headers=headers)
    except httpx2.TimeoutException:
        return Served((), f"no answer within {TIMEOUT_SECONDS:g} s")
    except httpx2.HTTPError as err:
        return Served((), f"unreachable: {err or type(err).__name__}")
    if response.status_code != 200:
        return Served((), f"HTTP {response.status_code}: {_error_text(response)}")
    try:
        data = response.json()["data"]
        names = [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]
    except (ValueError, KeyError, TypeError):
        return Served((), "the answer is not an OpenAI-style model list")
    return Served(tuple(sorted(set(names)))[:MAX_NAMES])


def _error_text(response: httpx2.Response) -> str:
    from agent_sessions.agent.model_errors import body_message

    try:
        body: object = response.json()
    except ValueError:
        body = response.text
    return body_message(body) or response.reason_phrase or "error"
