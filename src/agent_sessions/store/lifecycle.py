"""Lifecycle columns of a session, changed only by compare-and-set (docs/architecture.md,
Lifecycle).

Every state change is ``UPDATE … WHERE id = ? AND lifecycle_state IN (…) [AND lifecycle_version
= ?]`` plus ``lifecycle_version + 1``; the row count says who won, so two actors (a watcher and a
resume call, two API processes) can never both move a session.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from agent_sessions.store.models import Chat, SessionRow, utcnow

EXPIRY_BUFFER = timedelta(seconds=10)
"""Hibernate this long before the hard timeout, so the snapshot is taken while the VM lives."""
WORKSPACE_KEPT = "workspaceKept"
"""Added to ``sandbox_state`` when no snapshot could be made: the sandbox's processes are
stopped and its workspace, newer than any snapshot, is what a restore brings back."""


def keep_workspace(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` marked as a kept workspace (see :data:`WORKSPACE_KEPT`)."""
    return {**state, WORKSPACE_KEPT: True}


def workspace_kept(state: Mapping[str, Any] | None) -> bool:
    """Whether ``state`` names a kept workspace rather than a live (or stopping) sandbox."""
    return state is not None and state.get(WORKSPACE_KEPT) is True


@dataclass(frozen=True)
class LifecycleView:
    """The lifecycle columns of one session, read in one query."""

    id: str
    lifecycle_state: str | None
    lifecycle_version: int
    lifecycle_run_id: str | None
    sandbox_type: str
    sandbox_state: dict[str, Any] | None
    snapshot_url: str | None
    lifecycle_error: str | None
    last_activity_at: datetime | None
    hibernate_after: datetime | None
    sandbox_expires_at: datetime | None
    clone_url: str | None
    branch: str | None
    is_new_branch: bool
    status: str

    @property
    def due_at(self) -> datetime | None:
        """When the watcher should hibernate: idle deadline or just before the hard timeout."""
        deadlines = [d for d in (self.hibernate_after, self.sandbox_expires_at) if d is not None]
        if self.sandbox_expires_at is not None:
            deadlines[-1] = self.sandbox_expires_at - EXPIRY_BUFFER
        return min(deadlines) if deadlines else None


_VIEW_COLUMNS = (
    SessionRow.id,
    SessionRow.lifecycle_state,
    SessionRow.lifecycle_version,
    SessionRow.lifecycle_run_id,
    SessionRow.sandbox_type,
    SessionRow.sandbox_state,
    SessionRow.snapshot_url,
    SessionRow.lifecycle_error,
    SessionRow.last_activity_at,
    SessionRow.hibernate_after,
    SessionRow.sandbox_expires_at,
    SessionRow.clone_url,
    SessionRow.branch,
    SessionRow.is_new_branch,
    SessionRow.status,
)


def view(db: Session, session_id: str, *, for_update: bool = False) -> LifecycleView | None:
    """The session's lifecycle columns; ``for_update`` locks the row until the transaction
    ends (PostgreSQL; SQLite's writers are serialised already), for a decision that a
    concurrent write must not slip under (activity, a turn starting)."""
    query = select(*_VIEW_COLUMNS).where(SessionRow.id == session_id)
    if for_update:
        query = query.with_for_update(key_share=True)
    row = db.execute(query).one_or_none()
    return None if row is None else LifecycleView(*row)


def unfinished(db: Session) -> list[tuple[str, str, int]]:
    """Sessions whose after-commit work may never have started: still ``provisioning``, or
    ``archived`` while holding a sandbox. ``(id, state, version)`` each."""
    # sandbox_state is tested here rather than in SQL: a JSON column keeps None as JSON null.
    rows = db.execute(
        select(
            SessionRow.id,
            SessionRow.lifecycle_state,
            SessionRow.lifecycle_version,
            SessionRow.sandbox_state,
        ).where(SessionRow.lifecycle_state.in_(["provisioning", "archived"]))
    ).all()
    return [
        (sid, str(state), version)
        for sid, state, version, sandbox in rows
        if state == "provisioning" or sandbox is not None
    ]


def has_live_turn(db: Session, session_id: str) -> bool:
    """True while any chat of the session holds a stream (a turn is running)."""
    stmt = select(exists().where(Chat.session_id == session_id, Chat.active_stream_id.is_not(None)))
    return bool(db.execute(stmt).scalar())


def transition(
    db: Session,
    session_id: str,
    *,
    from_states: Collection[str | None],
    to_state: str | None,
    expected_version: int | None = None,
    lease: str | None = None,
    **values: Any,
) -> LifecycleView | None:
    """Move the session to ``to_state`` if it is in one of ``from_states`` (and, when given, at
    ``expected_version`` and held by ``lease``). Returns the new view, or ``None`` if we lost."""
    conditions = [SessionRow.id == session_id]
    states = [s for s in from_states if s is not None]
    if None in from_states:
        conditions.append(
            SessionRow.lifecycle_state.in_(states) | SessionRow.lifecycle_state.is_(None)
        )
    else:
        conditions.append(SessionRow.lifecycle_state.in_(states))
    if expected_version is not None:
        conditions.append(SessionRow.lifecycle_version == expected_version)
    if lease is not None:
        conditions.append(SessionRow.lifecycle_run_id == lease)
    result = db.execute(
        update(SessionRow)
        .where(*conditions)
        .values(
            lifecycle_state=to_state,
            lifecycle_version=SessionRow.lifecycle_version + 1,
            updated_at=utcnow(),
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return view(db, session_id)


def set_fields(
    db: Session,
    session_id: str,
    *,
    in_states: Collection[str],
    expected_version: int | None = None,
    **values: Any,
) -> LifecycleView | None:
    """Change timers or lease without a state change (no version bump unless asked)."""
    conditions = [SessionRow.id == session_id, SessionRow.lifecycle_state.in_(list(in_states))]
    if expected_version is not None:
        conditions.append(SessionRow.lifecycle_version == expected_version)
    result = db.execute(
        update(SessionRow)
        .where(*conditions)
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return view(db, session_id)


def touch(db: Session, session_id: str, idle_seconds: int) -> LifecycleView | None:
    """Record activity on an active session: ``lastActivityAt`` now, the idle deadline moved."""
    now = utcnow()
    return set_fields(
        db, session_id, in_states={"active"}, last_activity_at=now,
        hibernate_after=now + timedelta(seconds=idle_seconds),
    )  # fmt: skip


def claim_lease(db: Session, session_id: str, run_id: str, *, stale_before: datetime) -> bool:
    """Take the watcher lease if it is free, ours already, or stale (its deadline long past)."""
    due_stale = (SessionRow.hibernate_after.is_not(None)) & (
        SessionRow.hibernate_after < stale_before
    )
    result = db.execute(
        update(SessionRow)
        .where(
            SessionRow.id == session_id,
            SessionRow.lifecycle_state == "active",
            SessionRow.lifecycle_run_id.is_(None)
            | (SessionRow.lifecycle_run_id == run_id)
            | due_stale,
        )
        .values(lifecycle_run_id=run_id)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def release_lease(db: Session, session_id: str, run_id: str) -> None:
    db.execute(
        update(SessionRow)
        .where(SessionRow.id == session_id, SessionRow.lifecycle_run_id == run_id)
        .values(lifecycle_run_id=None)
        .execution_options(synchronize_session=False)
    )
