"""Schema migrations (Alembic), run by ``serve`` on start and by ``agent-sessions migrate``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from agent_sessions.store.database import Database

_SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))
_PG_LOCK_KEY = 0x6167_656E_7473  # advisory lock id: several `serve` processes may start at once


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call from several processes at once."""
    with db.migration_connection() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
        try:
            command.upgrade(alembic_config(conn), revision)
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()


def head_revision() -> str:
    """The revision :func:`upgrade` brings the schema to by default (``migrate --json``)."""
    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())
