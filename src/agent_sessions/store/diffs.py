"""The session's cached diff: the last diff computed, readable without its sandbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from agent_sessions.store.models import SessionRow

__all__ = ["save_cached_diff"]


def save_cached_diff(
    db: Session, session_id: str, diff: dict[str, Any], computed_at: datetime
) -> bool:
    """Store ``diff`` (the wire object) with ``linesAdded``/``linesRemoved`` from its summary,
    unless a diff whose computation started later is already there (two refreshes racing: the
    older view of the workspace must not win). False when it was not stored."""
    summary = diff["summary"]
    done = db.execute(
        update(SessionRow)
        .where(
            SessionRow.id == session_id,
            or_(
                SessionRow.cached_diff_updated_at.is_(None),
                SessionRow.cached_diff_updated_at <= computed_at,
            ),
        )
        .values(
            cached_diff=diff,
            cached_diff_updated_at=computed_at,
            lines_added=summary["totalAdditions"],
            lines_removed=summary["totalDeletions"],
        )
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]
