"""``/api/sessions/{sessionId}/chats``: list, create, get, patch, delete, mark read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from agent_sessions.api import schemas
from agent_sessions.api.convert import chat_out, chat_summary_out, message_out
from agent_sessions.api.deps import AccountId, ServicesDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import InvalidInput
from agent_sessions.store import chats as store
from agent_sessions.store import sessions

router = APIRouter(prefix="/api/sessions/{sessionId}/chats", tags=["chats"])
_MAX_CHAT_ID = 128


def _chat_id(value: object) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > _MAX_CHAT_ID
        or any(c.isspace() or not c.isprintable() or c == "/" for c in value)
    ):
        raise InvalidInput("Invalid chat id")
    return value


@router.get(
    "",
    response_model=schemas.ChatList,
    summary="List the session's chats, oldest first",
    responses=errors(401, 403, 404),
)
def list_chats(services: ServicesDep, account_id: AccountId, sessionId: str) -> schemas.ChatList:
    with services.db.read() as db:
        sessions.get_owned(db, sessionId, account_id)
        items = store.list_chats(db, session_id=sessionId, account_id=account_id)
        return schemas.ChatList(
            chats=[chat_summary_out(i) for i in items],
            default_model_id=services.settings.default_model,
        )


@router.post(
    "",
    response_model=schemas.ChatResponse,
    summary="Create a chat (idempotent for the same id in the same session)",
    responses=errors(400, 401, 403, 404, 409, 413),
)
def create_chat(
    services: ServicesDep,
    account_id: AccountId,
    sessionId: str,
    body: Annotated[schemas.ChatCreate | None, Body()] = None,
) -> schemas.ChatResponse:
    chat_id = _chat_id(body.id if body else None)
    with services.db.write() as db:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = store.create_chat(db, session_id=sessionId, chat_id=chat_id)
        return schemas.ChatResponse(chat=chat_out(chat))


@router.get(
    "/{chatId}",
    response_model=schemas.ChatDetail,
    summary="Get a chat with its stored messages",
    responses=errors(401, 403, 404),
)
def get_chat(
    services: ServicesDep, account_id: AccountId, sessionId: str, chatId: str
) -> schemas.ChatDetail:
    with services.db.read() as db:
        sessions.get_owned(db, sessionId, account_id)
        chat = store.get_chat(db, session_id=sessionId, chat_id=chatId)
        return schemas.ChatDetail(
            chat=chat_out(chat),
            is_streaming=chat.active_stream_id is not None,
            messages=[message_out(m) for m in store.messages(db, chat.id)],
        )


@router.patch(
    "/{chatId}",
    response_model=schemas.ChatResponse,
    summary="Rename a chat or change its model",
    responses=errors(400, 401, 403, 404, 413),
)
def patch_chat(
    services: ServicesDep,
    account_id: AccountId,
    sessionId: str,
    chatId: str,
    body: Annotated[schemas.ChatPatch | None, Body()] = None,
) -> schemas.ChatResponse:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, by_alias=False) if body else {}
    if not changes:
        raise InvalidInput("Provide at least one of title or modelId")
    with services.db.write() as db:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = store.get_chat(db, session_id=sessionId, chat_id=chatId)
        store.update_chat(chat, changes)
        return schemas.ChatResponse(chat=chat_out(chat))


@router.delete(
    "/{chatId}",
    response_model=schemas.Success,
    summary="Delete a chat (not the session's only one)",
    responses=errors(400, 401, 403, 404),
)
def delete_chat(
    services: ServicesDep, account_id: AccountId, sessionId: str, chatId: str
) -> schemas.Success:
    with services.db.write() as db:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        store.delete_chat(db, store.get_chat(db, session_id=sessionId, chat_id=chatId))
    return schemas.Success()


@router.post(
    "/{chatId}/read",
    response_model=schemas.Success,
    summary="Mark the chat read for the caller",
    responses=errors(401, 403, 404),
)
def mark_read(
    services: ServicesDep, account_id: AccountId, sessionId: str, chatId: str
) -> schemas.Success:
    with services.db.write() as db:
        sessions.get_owned(db, sessionId, account_id)
        store.get_chat(db, session_id=sessionId, chat_id=chatId)
        store.mark_read(db, account_id=account_id, chat_id=chatId)
    return schemas.Success()
