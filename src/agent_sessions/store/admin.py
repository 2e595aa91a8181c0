"""What the operator's listings read (``agent-sessions accounts list``, ``sessions list``,
``runs list``, ``hosts list``, ``orgs list``): every account's rows, which the API never shows
one account, as plain dicts with the API's names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent_sessions.store.models import (
    Account,
    ApiKey,
    ChatRun,
    Host,
    Membership,
    Organization,
    SessionRow,
)

DEFAULT_LIMIT = 100


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def accounts(s: Session) -> list[dict[str, Any]]:
    keys = (
        select(ApiKey.account_id, func.count().label("n"))
        .where(ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.account_id)
        .subquery()
    )
    live = (
        select(SessionRow.account_id, func.count().label("n"))
        .where(SessionRow.status != "archived")
        .group_by(SessionRow.account_id)
        .subquery()
    )
    rows = s.execute(
        select(Account, func.coalesce(keys.c.n, 0), func.coalesce(live.c.n, 0))
        .outerjoin(keys, keys.c.account_id == Account.id)
        .outerjoin(live, live.c.account_id == Account.id)
        .order_by(Account.created_at, Account.id)
    )
    return [
        {"accountId": a.id, "name": a.name, "createdAt": _iso(a.created_at),
         "activeKeys": int(k), "sessions": int(n)}
        for a, k, n in rows
    ]  # fmt: skip


def organizations(s: Session) -> list[dict[str, Any]]:
    members = (
        select(Membership.organization_id, func.count().label("n"))
        .group_by(Membership.organization_id)
        .subquery()
    )
    rows = s.execute(
        select(Organization, func.coalesce(members.c.n, 0))
        .outerjoin(members, members.c.organization_id == Organization.id)
        .order_by(Organization.created_at, Organization.id)
    )
    return [
        {"organizationId": o.id, "name": o.name, "createdAt": _iso(o.created_at),
         "members": int(n)}
        for o, n in rows
    ]  # fmt: skip


def sessions(
    s: Session, *, account_id: str | None, state: str | None, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Newest first; ``state`` is a lifecycle state (``active``, ``hibernated``…) or
    ``archived``."""
    stmt = select(SessionRow).order_by(SessionRow.updated_at.desc(), SessionRow.id).limit(limit)
    if account_id is not None:
        stmt = stmt.where(SessionRow.account_id == account_id)
    if state == "archived":
        stmt = stmt.where(SessionRow.status == "archived")
    elif state is not None:
        stmt = stmt.where(SessionRow.lifecycle_state == state)
    out = []
    for row in s.scalars(stmt):
        host = (row.sandbox_state or {}).get("host")
        out.append({
            "sessionId": row.id, "accountId": row.account_id, "title": row.title,
            "status": row.status, "lifecycleState": row.lifecycle_state,
            "sandboxType": row.sandbox_type, "host": host if isinstance(host, str) else None,
            "lifecycleError": row.lifecycle_error, "updatedAt": _iso(row.updated_at),
        })  # fmt: skip
    return out


def runs(
    s: Session, *, account_id: str | None, status: str | None, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Newest first."""
    stmt = select(ChatRun).order_by(ChatRun.created_at.desc(), ChatRun.id).limit(limit)
    if account_id is not None:
        stmt = stmt.where(ChatRun.account_id == account_id)
    if status is not None:
        stmt = stmt.where(ChatRun.status == status)
    return [
        {"runId": r.id, "accountId": r.account_id, "sessionId": r.session_id,
         "chatId": r.chat_id, "modelId": r.model_id, "status": r.status,
         "acceptedBy": r.executor_id, "createdAt": _iso(r.created_at),
         "durationMs": r.duration_ms, "error": r.error}
        for r in s.scalars(stmt)
    ]  # fmt: skip


def hosts(s: Session) -> list[dict[str, Any]]:
    return [
        {"executorId": h.executor_id, "state": h.state, "hostname": h.hostname, "pid": h.pid,
         "url": h.url, "sandboxProvider": h.sandbox_provider, "startedAt": _iso(h.started_at),
         "heartbeatAt": _iso(h.heartbeat_at), "takenOverBy": h.taken_over_by,
         "takenOverAt": _iso(h.taken_over_at)}
        for h in s.scalars(select(Host).order_by(Host.executor_id))
    ]  # fmt: skip
