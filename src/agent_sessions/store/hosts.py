"""The ``hosts`` table: which processes share the database, and which of them still live.

Every write is a compare-and-set, so two processes acting at once (two starting with one
executor id, two noticing the same silent host) can never both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent_sessions.exceptions import NotFound
from agent_sessions.store.models import Host, SessionRow


@dataclass(frozen=True)
class HostView:
    executor_id: str
    instance: str
    hostname: str
    pid: int
    url: str | None
    sandbox_provider: str
    state: str
    heartbeat_at: datetime

    @classmethod
    def of(cls, row: Host) -> HostView:
        return cls(
            row.executor_id, row.instance, row.hostname, row.pid, row.url,
            row.sandbox_provider, row.state, row.heartbeat_at,
        )  # fmt: skip


def holder(s: Session, executor_id: str, *, lock: bool = False) -> HostView | None:
    """The process recorded live under ``executor_id``, if any (locked for the register that
    follows, with ``lock``)."""
    row = s.get(Host, executor_id, with_for_update=lock)
    return HostView.of(row) if row is not None and row.state == "live" else None


def record(s: Session, me: HostView) -> None:
    """Record ``me`` as the live process of its executor id (a new start of it)."""
    row = s.get(Host, me.executor_id)
    if row is None:
        row = Host(executor_id=me.executor_id)
        s.add(row)
    row.instance, row.hostname, row.pid, row.url = me.instance, me.hostname, me.pid, me.url
    row.sandbox_provider, row.state = me.sandbox_provider, "live"
    row.started_at = row.heartbeat_at = me.heartbeat_at
    row.taken_over_by = row.taken_over_at = None


def beat(s: Session, executor_id: str, instance: str, now: datetime) -> bool:
    """The heartbeat; False when this process is no longer the live holder of its id (it was
    taken over after a silence, or another process took the id)."""
    done = s.execute(
        update(Host)
        .where(Host.executor_id == executor_id, Host.instance == instance, Host.state == "live")
        .values(heartbeat_at=now)
    )
    return done.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def stopped(s: Session, executor_id: str, instance: str) -> None:
    """A clean shutdown: nobody takes the host over, its sessions wait for its return."""
    s.execute(
        update(Host)
        .where(Host.executor_id == executor_id, Host.instance == instance, Host.state == "live")
        .values(state="stopped")
    )


def others_live(s: Session, executor_id: str, *, alive_after: datetime) -> list[HostView]:
    rows = s.scalars(
        select(Host).where(
            Host.executor_id != executor_id, Host.state == "live", Host.heartbeat_at > alive_after
        )
    )
    return [HostView.of(r) for r in rows]


def live(s: Session, *, alive_after: datetime) -> dict[str, HostView]:
    rows = s.scalars(select(Host).where(Host.state == "live", Host.heartbeat_at > alive_after))
    return {r.executor_id: HostView.of(r) for r in rows}


def silent(s: Session, *, alive_after: datetime) -> list[str]:
    """Hosts that claim to live but have not beaten since ``alive_after``."""
    return list(
        s.scalars(
            select(Host.executor_id).where(Host.state == "live", Host.heartbeat_at <= alive_after)
        )
    )


def take_over(
    s: Session, executor_id: str, *, by: str, alive_after: datetime, now: datetime
) -> bool:
    """Mark a silent host gone, taken over by ``by``; True for the one process that did."""
    done = s.execute(
        update(Host)
        .where(
            Host.executor_id == executor_id,
            Host.state == "live",
            Host.heartbeat_at <= alive_after,
        )
        .values(state="gone", taken_over_by=by, taken_over_at=now)
    )
    return done.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def sandbox_host(s: Session, session_id: str) -> str | None:
    """The host named by the session's sandbox state (None: no sandbox, or not a local one)."""
    state = s.scalar(select(SessionRow.sandbox_state).where(SessionRow.id == session_id))
    host = state.get("host") if isinstance(state, dict) else None
    return host if isinstance(host, str) else None


def release(s: Session, executor_id: str, *, alive_after: datetime) -> str:
    """Ask the live hosts to take ``executor_id`` over at their next look (its heartbeat set
    far in the past): for a host stopped for good, or lost. Returns what happened: ``live``
    (refused: it beats), ``gone`` (taken over already), ``released``; raises NotFound."""
    row = s.get(Host, executor_id, with_for_update=True)
    if row is None:
        raise NotFound(f"No host {executor_id!r}")
    if row.state == "gone":
        return "gone"
    if row.state == "live" and row.heartbeat_at > alive_after:
        return "live"
    row.state = "live"
    row.heartbeat_at = datetime(1970, 1, 1, tzinfo=UTC)
    return "released"
