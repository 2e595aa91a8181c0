"""Per-account limits counted in the database: sessions with a live sandbox, live turns.

Exact across processes because the count and the change it allows share one transaction,
and that transaction first locks the account's row: two requests of one account that would
both take the last place are serialised, and the second counts the first's row. On SQLite
every write transaction is serialised already; on PostgreSQL the lock is ``FOR NO KEY
UPDATE``, which does not block inserts that merely reference the account (its foreign keys
take ``KEY SHARE``).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent_sessions.exceptions import TooManyRequests
from agent_sessions.store.models import Account, ChatRun, SessionRow
from agent_sessions.store.turns import LIVE

LIVE_SANDBOX_STATES = ("provisioning", "active", "restoring", "hibernating")
"""Lifecycle states that hold (or are about to hold) a sandbox."""
SANDBOXES_RETRY_AFTER = 30
"""Seconds: a sandbox frees when its session hibernates or is archived, not on a schedule."""
TURNS_RETRY_AFTER = 5
"""Seconds: turns end on their own, most within seconds to minutes."""


def lock_account(db: Session, account_id: str) -> None:
    """Hold the account's row until the transaction ends (see the module's docstring)."""
    db.execute(select(Account.id).where(Account.id == account_id).with_for_update(key_share=True))


def session_account(db: Session, session_id: str) -> str | None:
    return db.scalar(select(SessionRow.account_id).where(SessionRow.id == session_id))


def live_sandboxes(db: Session, account_id: str) -> int:
    stmt = select(func.count()).where(
        SessionRow.account_id == account_id,
        SessionRow.lifecycle_state.in_(LIVE_SANDBOX_STATES),
    )
    return int(db.scalar(stmt) or 0)


def live_turns(db: Session, account_id: str) -> int:
    stmt = select(func.count()).where(ChatRun.account_id == account_id, ChatRun.status.in_(LIVE))
    return int(db.scalar(stmt) or 0)


def require_sandbox_room(db: Session, account_id: str, limit: int) -> None:
    """Refuse one more live sandbox for the account (``limit`` 0: no limit). Call with the
    account locked (:func:`lock_account`)."""
    if limit and live_sandboxes(db, account_id) >= limit:
        raise TooManyRequests(
            f"Too many sessions with a live sandbox: an account may have {limit} "
            "(AGENT_SESSIONS_ACCOUNT_MAX_LIVE_SANDBOXES); hibernate or archive one first",
            retry_after=SANDBOXES_RETRY_AFTER,
        )


def require_turn_room(db: Session, account_id: str, limit: int) -> None:
    """Refuse one more queued or running turn for the account (``limit`` 0: no limit). Call
    with the account locked (:func:`lock_account`)."""
    if limit and live_turns(db, account_id) >= limit:
        raise TooManyRequests(
            f"Too many turns in progress: an account may have {limit} queued or running "
            "(AGENT_SESSIONS_ACCOUNT_MAX_TURNS); wait for one to finish",
            retry_after=TURNS_RETRY_AFTER,
        )
