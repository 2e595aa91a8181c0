"""The asyncio client."""

from __future__ import annotations

from agent_sessions.client._http import AsyncTransport
from agent_sessions.client.routes import Routes

__all__ = ["AsyncClient"]


class AsyncClient(Routes, AsyncTransport):
    """:class:`~agent_sessions.client.Client` with coroutines, on an ``httpx.AsyncClient``: the
    same methods, each awaited; a turn's stream is an :class:`~.AsyncTurnStream` (``async
    for``). Use it with ``async with``, or await :meth:`aclose`.
    """
