"""Chats of a session: list with unread state, idempotent create, patch, delete, read marks.

A chat id is the client's, unique per owning account (ADR 9): every lookup goes through the
account (``ChatKey``) and, on the session routes, checks the session too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent_sessions.exceptions import Conflict, InvalidInput, NotFound
from agent_sessions.ids import nanoid
from agent_sessions.store.models import Chat, ChatKey, ChatMessage, ChatRead, utcnow
from agent_sessions.store.reads import Query, Reader, first

CHAT_NOT_FOUND = "Chat not found"
DEFAULT_TITLE = "New chat"


@dataclass(frozen=True)
class ChatWithUnread:
    chat: Chat
    has_unread: bool


def list_chats(db: Session, *, session_id: str, account_id: str) -> list[ChatWithUnread]:
    stmt = (
        select(Chat, ChatRead.last_read_at)
        .outerjoin(
            ChatRead,
            (ChatRead.account_id == Chat.account_id)
            & (ChatRead.chat_id == Chat.id)
            & (ChatRead.account_id == account_id),
        )
        .where(Chat.session_id == session_id)
        .order_by(Chat.created_at, Chat.id)
    )
    out = []
    for chat, last_read in db.execute(stmt).all():
        last_assistant = chat.last_assistant_message_at
        unread = last_assistant is not None and (last_read is None or last_assistant > last_read)
        out.append(ChatWithUnread(chat, unread))
    return out


def get_chat(db: Session, *, account_id: str, session_id: str, chat_id: str) -> Chat:
    """The account's chat if it belongs to this session (the account's, checked by the caller);
    a chat of another session is reported as missing."""
    if "\x00" in chat_id:  # no id has one, and PostgreSQL refuses NUL in text (a 500)
        raise NotFound(CHAT_NOT_FOUND)
    chat = db.get(Chat, ChatKey(account_id, chat_id))
    if chat is None or chat.session_id != session_id:
        raise NotFound(CHAT_NOT_FOUND)
    return chat


def create_chat(
    db: Session,
    *,
    account_id: str,
    session_id: str,
    chat_id: str | None,
    model_id: str | None = None,
) -> Chat:
    """Create a chat in the account's session; the same id in the same session returns the
    existing chat (idempotent), in another session of the account it is a conflict. Another
    account's chat of the same id is no concern of this one's. ``model_id``: the new chat's
    model (the default model: ``Chat.modelId`` is a string on the wire)."""
    if chat_id is not None:
        existing = db.get(Chat, ChatKey(account_id, chat_id))
        if existing is not None:
            if existing.session_id != session_id:
                raise Conflict("Chat ID conflict")
            return existing
    now = utcnow()
    chat = Chat(
        account_id=account_id,
        id=chat_id or nanoid(),
        session_id=session_id,
        title=DEFAULT_TITLE,
        model_id=model_id,
        created_at=now,
        updated_at=now,
    )
    try:
        with db.begin_nested():
            db.add(chat)
    except IntegrityError:
        # Lost a race with another request creating the same id: answer as if we came second.
        return create_chat(
            db, account_id=account_id, session_id=session_id, chat_id=chat.id, model_id=model_id
        )
    return chat


def update_chat(chat: Chat, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        setattr(chat, field, value)
    chat.updated_at = utcnow()


def approval_rules(db: Session, chat: ChatKey) -> list[dict[str, Any]]:
    """The approval rules the chat adds to the operator's (ADR 14)."""
    row = db.get(Chat, chat)
    return list(row.approval_rules or []) if row is not None else []


def delete_chat(db: Session, chat: Chat) -> None:
    """Delete a chat unless it is the session's only one (callers hold the session row lock)."""
    count = db.execute(
        select(func.count()).select_from(Chat).where(Chat.session_id == chat.session_id)
    ).scalar_one()
    if count <= 1:
        raise InvalidInput("Cannot delete the only chat in a session")
    db.delete(chat)


def messages(db: Session, chat: ChatKey) -> list[ChatMessage]:
    stmt = (
        select(ChatMessage)
        .where(ChatMessage.account_id == chat.account_id, ChatMessage.chat_id == chat.chat_id)
        .order_by(ChatMessage.created_at, ChatMessage.id)
    )
    return list(db.scalars(stmt))


def mark_read(db: Session, *, account_id: str, chat_id: str) -> None:
    """Mark the account's chat read (the reader is the owner: only the owner reaches a chat)."""
    now = utcnow()
    row = db.get(ChatRead, (account_id, chat_id))
    if row is not None:
        row.last_read_at = now
        return
    try:
        with db.begin_nested():
            db.add(ChatRead(account_id=account_id, chat_id=chat_id, last_read_at=now))
    except IntegrityError:  # a concurrent request inserted it first; ours is the later read
        mark_read(db, account_id=account_id, chat_id=chat_id)


def get_owned_chat(db: Session, *, chat_id: str, account_id: str) -> Chat:
    """The caller's chat by id (the agent-turn routes), 404 when the caller has none of that id:
    another account's chat of the same id is not the caller's, and its existence is not told."""
    if "\x00" in chat_id:
        raise NotFound(CHAT_NOT_FOUND)
    chat = db.get(Chat, ChatKey(account_id, chat_id))
    if chat is None:
        raise NotFound(CHAT_NOT_FOUND)
    return chat


_LIVE_STREAM = Query(
    select(Chat.session_id, Chat.active_stream_id).where(
        Chat.account_id == bindparam("account"), Chat.id == bindparam("chat")
    )
)


def live_stream(db: Reader, *, chat_id: str, account_id: str) -> tuple[str, str | None]:
    """The caller's chat's session and live run, as :func:`get_owned_chat` finds the chat
    (404 likewise), in one compiled query: the stream resume route is a hot read."""
    if "\x00" in chat_id:
        raise NotFound(CHAT_NOT_FOUND)
    row = first(db, _LIVE_STREAM, account=account_id, chat=chat_id)
    if row is None:
        raise NotFound(CHAT_NOT_FOUND)
    return row.session_id, row.active_stream_id
