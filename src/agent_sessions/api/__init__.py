"""HTTP layer: the only package that knows about HTTP (FastAPI routes, schemas, errors)."""

from agent_sessions.api.app import create_app

__all__ = ["create_app"]
