"""A chat's messages from outside a turn: edit and retry (delete from a user message on), fork
through an assistant message, and a client's upsert of an assistant message."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from agent_sessions.agent.assistant_parts import assistant_message
from agent_sessions.api import schemas
from agent_sessions.api.convert import chat_out
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.api.routes.chats import CHAT_FIRST, chat_id_of
from agent_sessions.exceptions import NotFound
from agent_sessions.store import chats as chat_store
from agent_sessions.store import messages as store
from agent_sessions.store import sessions

router = APIRouter(prefix="/api/sessions/{sessionId}/chats/{chatId}", tags=["chats"])


@router.delete(
    "/messages/{messageId}",
    response_model=schemas.MessagesDeleted,
    summary="Delete a user message and every message after it (edit, retry)",
    responses=errors(400, 401, 403, 404, 409),
)
async def delete_messages(
    caller: CallerDep, sessionId: str, chatId: str, messageId: str
) -> schemas.MessagesDeleted:
    services, account_id = caller

    def delete(db: Session) -> list[str]:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = chat_store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        if "\x00" in messageId:
            raise NotFound(store.MESSAGE_NOT_FOUND)
        return store.delete_from(db, chat, messageId)

    return schemas.MessagesDeleted(deleted_message_ids=await services.db.write_call(delete))


@router.post(
    "/fork",
    response_model=schemas.ChatResponse,
    summary='Copy the chat through an assistant message into a new chat, "Fork of <title>"',
    responses=errors(400, 401, 403, 404, 409, 413),
    dependencies=CHAT_FIRST,
)
async def fork_chat(
    caller: CallerDep, sessionId: str, chatId: str, body: schemas.ChatFork
) -> schemas.ChatResponse:
    services, account_id = caller
    new_id = chat_id_of(body.id)

    def fork(db: Session) -> schemas.ChatResponse:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = chat_store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        if "\x00" in body.message_id:
            raise NotFound(store.MESSAGE_NOT_FOUND)
        return schemas.ChatResponse(
            chat=chat_out(store.fork(db, chat, through=body.message_id, new_id=new_id))
        )

    return await services.db.write_call(fork)


@router.post(
    "/messages",
    response_model=schemas.MessageUpserted,
    summary="Store a client's assistant message (insert, or replace the one of that id)",
    responses=errors(400, 401, 403, 404, 409, 413),
    dependencies=CHAT_FIRST,
)
async def upsert_message(
    caller: CallerDep, sessionId: str, chatId: str, body: schemas.AssistantMessageUpsert
) -> schemas.MessageUpserted:
    services, account_id = caller
    raw = body.resolved().model_dump(exclude_none=True)

    def upsert(db: Session) -> schemas.MessageUpserted:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = chat_store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        stored = store.stored_message(db, chat.key, raw["id"])
        previous = stored.parts.get("parts") if stored is not None else None
        metadata = stored.parts.get("metadata") if stored is not None else None
        message = assistant_message(
            raw,
            previous if isinstance(previous, list) else None,
            metadata if isinstance(metadata, dict) else None,
        )
        return schemas.MessageUpserted(status=store.upsert_assistant(db, chat, message).status)

    return await services.db.write_call(upsert)
