"""A chat's stored messages edited from outside a turn: delete from a user message on (edit and
retry), fork through an assistant message, a client's upsert of an assistant message.

Each runs while no turn holds the chat, and keeps it so: :func:`hold_idle_chat` takes the chat
row with a conditional ``UPDATE`` (``WHERE active_stream_id IS NULL``), so a turn's claim
(``turns.claim_chat``, the same kind of ``UPDATE``) waits for this transaction and a live turn
is seen rather than written under. Order is the chat's message order, ``(created_at, id)``.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from agent_sessions.exceptions import Conflict, InvalidInput, NotFound
from agent_sessions.store.models import Chat, ChatKey, ChatMessage, ChatRead, ChatRun, utcnow

MESSAGE_NOT_FOUND = "Message not found"
LIVE_TURN = "This chat has a turn in progress; stop it or wait for it to end"
FORK_PREFIX = "Fork of "
_TITLE_WIDTH = 500  # chats.title


def hold_idle_chat(db: Session, chat: Chat) -> None:
    """Hold the chat's row for this transaction if no turn is live on it, else 409."""
    held = db.execute(
        update(Chat)
        .where(Chat.account_id == chat.account_id, Chat.id == chat.id)
        .where(Chat.active_stream_id.is_(None))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if held.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(LIVE_TURN)


def _ordered(db: Session, chat: ChatKey) -> list[ChatMessage]:
    stmt = (
        select(ChatMessage)
        .where(ChatMessage.account_id == chat.account_id, ChatMessage.chat_id == chat.chat_id)
        .order_by(ChatMessage.created_at, ChatMessage.id)
    )
    return list(db.scalars(stmt))


def _position(messages: list[ChatMessage], message_id: str) -> int:
    for i, m in enumerate(messages):
        if m.id == message_id:
            return i
    raise NotFound(MESSAGE_NOT_FOUND)


def delete_from(db: Session, chat: Chat, message_id: str) -> list[str]:
    """Delete a user message and every message after it; returns their ids, in order.

    The chat's ``lastAssistantMessageAt`` becomes that of the last assistant message left."""
    hold_idle_chat(db, chat)
    messages = _ordered(db, chat.key)
    start = _position(messages, message_id)
    if messages[start].role != "user":
        raise InvalidInput("Only user messages can be deleted")
    gone = [m.id for m in messages[start:]]
    db.execute(
        delete(ChatMessage)
        .where(ChatMessage.account_id == chat.account_id, ChatMessage.chat_id == chat.id)
        .where(ChatMessage.id.in_(gone))
        .execution_options(synchronize_session=False)
    )
    left = [m for m in messages[:start] if m.role == "assistant"]
    chat.last_assistant_message_at = left[-1].created_at if left else None
    chat.updated_at = utcnow()
    return gone


def fork(
    db: Session, source: Chat, *, through: str, new_id: str | None, now: datetime | None = None
) -> Chat:
    """A new chat of the same session, "Fork of <title>", holding copies of the source's messages
    through the assistant message ``through``; marked read (its owner made it).

    Copies get new ids (the message's own ``id`` inside the stored UIMessage too) and keep their
    times, made strictly increasing so that ``(created_at, id)`` keeps their order whatever the
    new ids are. An id the account already uses for a chat is 409 (a fork is always new), and
    so is the reply a live turn is still writing (any other can be forked meanwhile)."""
    messages = _ordered(db, source.key)
    end = _position(messages, through)
    if messages[end].role != "assistant":
        raise InvalidInput("Only assistant messages can be forked")
    live = db.get(ChatRun, source.active_stream_id) if source.active_stream_id else None
    if live is not None and live.assistant_message_id == through:
        raise Conflict("That reply is still being written; fork it when its turn has ended")
    chat_id = new_id or str(uuid.uuid4())
    if db.get(Chat, ChatKey(source.account_id, chat_id)) is not None:
        raise Conflict("Chat ID conflict")
    now = now or utcnow()
    chat = Chat(
        account_id=source.account_id,
        id=chat_id,
        session_id=source.session_id,
        title=(FORK_PREFIX + source.title)[:_TITLE_WIDTH],
        model_id=source.model_id,
        last_assistant_message_at=messages[end].created_at,
        created_at=now,
        updated_at=now,
    )
    db.add(chat)
    db.flush()  # the chat before its messages (their foreign key)
    at: datetime | None = None
    for m in messages[: end + 1]:
        at = m.created_at if at is None or m.created_at > at else at + timedelta(microseconds=1)
        copy_id = str(uuid.uuid4())
        stored = copy.deepcopy(dict(m.parts))
        stored["id"] = copy_id
        db.add(ChatMessage(account_id=chat.account_id, chat_id=chat.id, id=copy_id,
                           role=m.role, parts=stored, created_at=at))  # fmt: skip
    read = db.get(ChatRead, (chat.account_id, chat.id))
    if read is None:
        db.add(ChatRead(account_id=chat.account_id, chat_id=chat.id, last_read_at=now))
    else:  # a read mark left by a deleted chat of the same id
        read.last_read_at = now
    return chat


@dataclass(frozen=True)
class Upserted:
    status: Literal["inserted", "updated"]


def stored_message(db: Session, chat: ChatKey, message_id: str) -> ChatMessage | None:
    if "\x00" in message_id:
        return None
    return db.get(ChatMessage, (chat.account_id, chat.chat_id, message_id))


def upsert_assistant(db: Session, chat: Chat, message: dict[str, Any]) -> Upserted:
    """Store a client's assistant message under its id in the chat (already checked by the
    caller, ``agent.assistant_parts``); 409 when the id is a message of another role there.
    A new message counts as the chat's latest reply (``lastAssistantMessageAt``)."""
    hold_idle_chat(db, chat)
    existing = stored_message(db, chat.key, message["id"])
    if existing is not None:
        if existing.role != "assistant":
            raise Conflict("Message ID already belongs to a message of another role")
        existing.parts = message
        return Upserted("updated")
    now = utcnow()
    db.add(ChatMessage(account_id=chat.account_id, chat_id=chat.id, id=message["id"],
                       role="assistant", parts=message, created_at=now))  # fmt: skip
    chat.last_assistant_message_at = now
    chat.updated_at = now
    return Upserted("inserted")
