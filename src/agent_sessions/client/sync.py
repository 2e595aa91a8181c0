"""The blocking client."""

from __future__ import annotations

from agent_sessions.client._http import SyncTransport
from agent_sessions.client.routes import Routes

__all__ = ["Client"]


class Client(Routes, SyncTransport):
    """The HTTP API, one method per route, on an ``httpx.Client``.

    ``Client(base_url, api_key)``; without them, ``AGENT_SESSIONS_URL`` (else
    ``http://127.0.0.1:8000``) and ``AGENT_SESSIONS_API_KEY``. Keyword options: ``timeout``
    (seconds, or an ``httpx.Timeout``; a turn's stream never times out reading), ``retry`` (a
    :class:`~agent_sessions.client.RetryPolicy`), ``on_resume`` (called before a dropped
    stream is resumed), ``headers``, ``transport`` (an ``httpx`` transport). Use it as a
    context manager, or call :meth:`close`.
    """
