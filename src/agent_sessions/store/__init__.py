"""Persistence: SQLAlchemy models, Alembic migrations and the queries the layers above use."""

from agent_sessions.store import accounts, chats, sessions
from agent_sessions.store.database import Database
from agent_sessions.store.migrate import upgrade

__all__ = ["Database", "accounts", "chats", "sessions", "upgrade"]
