"""HTTP layer: the only package that knows about HTTP (FastAPI routes, schemas, errors).

``create_app`` is loaded on first use, so that importing ``agent_sessions.api.schemas`` (the
wire models, which the client library shares) does not load the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_sessions.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from agent_sessions.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
