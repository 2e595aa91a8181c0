"""Sessions: create (with the initial chat), read with ownership, list by page, patch, delete."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import and_, bindparam, delete, func, or_, select
from sqlalchemy.orm import Session

from agent_sessions.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from agent_sessions.ids import nanoid
from agent_sessions.store.lifecycle import workspace_kept
from agent_sessions.store.models import Chat, ChatRead, SessionRow, utcnow
from agent_sessions.store.reads import Query, Reader, first
from agent_sessions.store.titles import generate_title

T = TypeVar("T")
INITIAL_CHAT_TITLE = "New chat"
StatusFilter = Literal["active", "archived", "all"]


@dataclass(frozen=True)
class NewSession:
    """Validated input for :func:`create_session` (the API schema maps onto this)."""

    title: str | None = None
    organization_id: str | None = None
    artist_id: str | None = None
    clone_url: str | None = None
    repo_owner: str | None = None
    repo_name: str | None = None
    branch: str | None = None
    base_branch: str | None = None
    is_new_branch: bool = False
    auto_commit_push: bool = False
    auto_create_pr: bool = False
    global_skill_refs: tuple[dict[str, Any], ...] = ()
    sandbox_type: str = "local"
    model_id: str | None = None
    """The first chat's model (the default model)."""


def create_session(db: Session, *, account_id: str, new: NewSession) -> tuple[SessionRow, Chat]:
    """Insert the session and its first chat; the caller's transaction makes them one unit."""
    now = utcnow()
    row = SessionRow(
        id=nanoid(),
        account_id=account_id,
        organization_id=new.organization_id,
        artist_id=new.artist_id,
        title=new.title or generate_title(),
        status="running",
        repo_owner=new.repo_owner,
        repo_name=new.repo_name,
        branch=new.branch,
        base_branch=new.base_branch,
        clone_url=new.clone_url,
        is_new_branch=new.is_new_branch,
        auto_commit_push=new.auto_commit_push,
        auto_create_pr=new.auto_create_pr,
        global_skill_refs=list(new.global_skill_refs),
        sandbox_type=new.sandbox_type,
        sandbox_state=None,
        lifecycle_state="provisioning",
        lifecycle_version=0,
        lines_added=0,
        lines_removed=0,
        created_at=now,
        updated_at=now,
    )
    chat = Chat(
        account_id=account_id,
        id=nanoid(),
        session_id=row.id,
        title=INITIAL_CHAT_TITLE,
        model_id=new.model_id,
        created_at=now,
        updated_at=now,
    )
    db.add(row)
    db.flush()
    db.add(chat)
    db.flush()
    return row, chat


def _owned(row: T | None, account_id: str) -> T:
    if row is None:
        raise NotFound("Session not found")
    if row.account_id != account_id:  # type: ignore[attr-defined]
        raise Forbidden("You do not have access to this session")
    return row


def get_owned(
    db: Session, session_id: str, account_id: str, *, for_update: bool = False
) -> SessionRow:
    """The session (ORM object, for changes) if ``account_id`` owns it; :class:`NotFound` or
    :class:`Forbidden` otherwise. ``for_update`` locks the row on PostgreSQL (SQLite writers
    are already serialised)."""
    if "\x00" in session_id:  # no id has one, and PostgreSQL refuses NUL in text (a 500)
        raise NotFound("Session not found")
    stmt = select(SessionRow).where(SessionRow.id == session_id)
    if for_update:
        stmt = stmt.with_for_update()
    return _owned(db.execute(stmt).scalar_one_or_none(), account_id)


_SESSION_BY_ID = Query(select(SessionRow.__table__).where(SessionRow.id == bindparam("id")))


def read_owned(db: Reader, session_id: str, account_id: str) -> Any:
    """Like :func:`get_owned` for reads: a plain row (no ORM identity map, several times
    cheaper on the hot ``GET`` path) with the same attribute names."""
    if "\x00" in session_id:
        raise NotFound("Session not found")
    return _owned(first(db, _SESSION_BY_ID, id=session_id), account_id)


def _encode_cursor(row: SessionRow) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, sid = json.loads(raw)
        if "\x00" in str(sid):  # PostgreSQL refuses NUL in text; no id has one
            raise ValueError("NUL in cursor")
        return datetime.fromisoformat(created), str(sid)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as err:
        raise InvalidInput("Invalid cursor") from err


@dataclass(frozen=True)
class Page:
    rows: list[SessionRow]
    next_cursor: str | None
    """``None`` on the last page."""
    has_more: bool


def list_sessions(
    db: Session,
    *,
    account_id: str,
    status: StatusFilter,
    limit: int,
    cursor: str | None,
    offset: int = 0,
) -> Page:
    """One page, newest first, after ``cursor`` or ``offset`` sessions (not both)."""
    if cursor and offset:
        raise InvalidInput("Give cursor or offset, not both")
    stmt = select(SessionRow).where(SessionRow.account_id == account_id)
    if status == "active":
        stmt = stmt.where(SessionRow.status != "archived")
    elif status == "archived":
        stmt = stmt.where(SessionRow.status == "archived")
    if cursor:
        created, sid = _decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                SessionRow.created_at < created,
                and_(SessionRow.created_at == created, SessionRow.id < sid),
            )
        )
    stmt = stmt.order_by(SessionRow.created_at.desc(), SessionRow.id.desc())
    rows = list(db.scalars(stmt.offset(offset or None).limit(limit + 1)))
    if len(rows) > limit:
        return Page(rows[:limit], _encode_cursor(rows[limit - 1]), has_more=True)
    return Page(rows, None, has_more=False)


def archived_count(db: Session, account_id: str) -> int:
    stmt = (
        select(func.count())
        .select_from(SessionRow)
        .where(SessionRow.account_id == account_id, SessionRow.status == "archived")
    )
    return int(db.execute(stmt).scalar_one())


@dataclass(frozen=True)
class ChatsState:
    """What a session list shows of a session's chats."""

    has_unread: bool = False
    """Some chat has a reply newer than the account's last read of it (or never read)."""
    has_streaming: bool = False
    latest_chat_id: str | None = None
    """The most recently updated chat (then the most recently created)."""


def chats_state(db: Session, account_id: str, session_ids: list[str]) -> dict[str, ChatsState]:
    """The chats' state of each listed session, in one query over their chats (the
    ``(session_id, created_at)`` index) and the account's read marks."""
    if not session_ids:
        return {}
    stmt = (
        select(
            Chat.session_id,
            Chat.id,
            Chat.updated_at,
            Chat.created_at,
            Chat.active_stream_id,
            Chat.last_assistant_message_at,
            ChatRead.last_read_at,
        )
        .outerjoin(
            ChatRead,
            (ChatRead.account_id == Chat.account_id)
            & (ChatRead.chat_id == Chat.id)
            & (ChatRead.account_id == account_id),
        )
        .where(Chat.session_id.in_(session_ids))
    )
    found: dict[str, list[Any]] = {}
    for row in db.execute(stmt):
        found.setdefault(row.session_id, []).append(row)
    out = {}
    for session_id, chats in found.items():
        latest = max(chats, key=lambda c: (c.updated_at, c.created_at, c.id))
        out[session_id] = ChatsState(
            has_unread=any(
                c.last_assistant_message_at is not None
                and (c.last_read_at is None or c.last_assistant_message_at > c.last_read_at)
                for c in chats
            ),
            has_streaming=any(c.active_stream_id is not None for c in chats),
            latest_chat_id=latest.id,
        )
    return out


@dataclass(frozen=True)
class PatchEffect:
    """What a PATCH changed that someone outside the database must act on."""

    archived: bool = False
    unarchived: bool = False


STILL_PAUSING = "Sandbox is still being paused, try again in a few seconds."


def apply_patch(row: SessionRow, changes: dict[str, Any]) -> PatchEffect:
    """Apply validated PATCH fields (snake_case) to ``row``; archive rules as the Sessions API has
    them.

    Archiving moves the lifecycle to ``archived`` and clears its timers and lease; the sandbox is
    stopped afterwards, outside the transaction. Unarchiving is refused while a sandbox is still
    held (stopping) and no snapshot exists to resume from; a workspace kept after a failed
    snapshot is resumed from like a snapshot.
    """
    if not changes:
        return PatchEffect()
    effect = PatchEffect()
    new_status = changes.get("status")
    if new_status == "archived" and row.status != "archived":
        row.lifecycle_state = "archived"
        row.lifecycle_version += 1
        row.hibernate_after = None
        row.sandbox_expires_at = None
        row.lifecycle_run_id = None
        row.lifecycle_error = None
        effect = PatchEffect(archived=True)
    elif new_status is not None and new_status != "archived" and row.status == "archived":
        kept = workspace_kept(row.sandbox_state)
        if row.sandbox_state is not None and row.snapshot_url is None and not kept:
            raise Conflict(STILL_PAUSING)
        row.lifecycle_state = "hibernated" if row.snapshot_url or kept else None
        row.lifecycle_version += 1
        effect = PatchEffect(unarchived=True)
    for field, value in changes.items():
        setattr(row, field, value)
    row.updated_at = utcnow()
    return effect


def delete_session(db: Session, row: SessionRow) -> None:
    """Delete the session; chats, messages and read marks go with it (not left to the FK alone)."""
    db.execute(delete(Chat).where(Chat.session_id == row.id))
    db.delete(row)


def count_by_state(db: Session) -> dict[str | None, int]:
    """Sessions by lifecycle state, over all accounts (the metrics' sandbox gauge)."""
    stmt = select(SessionRow.lifecycle_state, func.count()).group_by(SessionRow.lifecycle_state)
    return {state: int(count) for state, count in db.execute(stmt)}
