"""``/api/sessions/{sessionId}/chats``: list, create, get, patch, delete, mark read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from sqlalchemy.orm import Session

from agent_sessions.agent import models
from agent_sessions.api import schemas
from agent_sessions.api.convert import chat_out, chat_summary_out, message_out, waiting_out
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import InvalidInput
from agent_sessions.store import chats as store
from agent_sessions.store import sessions, turns

router = APIRouter(prefix="/api/sessions/{sessionId}/chats", tags=["chats"])
_MAX_CHAT_ID = 128


def chat_id_of(value: object) -> str | None:
    """A client's chat id (``None``: make one), 400 "Invalid chat id" when unusable."""
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


async def _chat_found(caller: CallerDep, sessionId: str, chatId: str) -> None:
    """The session's and the chat's checks (403, 404) before the body's (400): FastAPI solves
    dependencies before it validates a body, and a client told 400 for a chat that does not
    exist would fix the wrong thing."""
    services, account_id = caller

    def find(db: Session) -> None:
        sessions.read_owned(db, sessionId, account_id)
        store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)

    await services.db.read_call(find)


CHAT_FIRST = [Depends(_chat_found)]
"""``dependencies=`` of a route whose body is checked after its chat is found."""


@router.get(
    "",
    response_model=schemas.ChatList,
    summary="List the session's chats, oldest first",
    responses=errors(401, 403, 404),
)
async def list_chats(caller: CallerDep, sessionId: str) -> schemas.ChatList:
    services, account_id = caller

    def listing(db: Session) -> schemas.ChatList:
        sessions.read_owned(db, sessionId, account_id)
        items = store.list_chats(db, session_id=sessionId, account_id=account_id)
        return schemas.ChatList(
            chats=[chat_summary_out(i, turns.live_reply(db, i.chat)) for i in items],
            default_model_id=models.default_model_for(db, services.settings, account_id),
        )

    return await services.db.read_call(listing)


@router.post(
    "",
    response_model=schemas.ChatResponse,
    summary="Create a chat (idempotent for the same id in the same session)",
    responses=errors(400, 401, 403, 404, 409, 413),
)
async def create_chat(
    caller: CallerDep,
    sessionId: str,
    body: Annotated[schemas.ChatCreate | None, Body()] = None,
) -> schemas.ChatResponse:
    services, account_id = caller
    chat_id = chat_id_of(body.id if body else None)

    def create(db: Session) -> schemas.ChatResponse:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = store.create_chat(
            db, account_id=account_id, session_id=sessionId, chat_id=chat_id,
            model_id=models.default_model_for(db, services.settings, account_id),
        )  # fmt: skip
        return schemas.ChatResponse(chat=chat_out(chat))

    return await services.db.write_call(create)


@router.get(
    "/{chatId}",
    response_model=schemas.ChatDetail,
    summary="Get a chat with its stored messages",
    responses=errors(401, 403, 404),
)
async def get_chat(caller: CallerDep, sessionId: str, chatId: str) -> schemas.ChatDetail:
    services, account_id = caller

    def detail(db: Session) -> schemas.ChatDetail:
        sessions.read_owned(db, sessionId, account_id)
        chat = store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        return schemas.ChatDetail(
            chat=chat_out(chat),
            is_streaming=chat.active_stream_id is not None,
            **waiting_out(turns.live_reply(db, chat)),
            messages=[message_out(m) for m in store.messages(db, chat.key)],
        )

    return await services.db.read_call(detail)


@router.patch(
    "/{chatId}",
    response_model=schemas.ChatResponse,
    summary="Rename a chat, change its model or its approval rules (added to the operator's)",
    responses=errors(400, 401, 403, 404, 413),
    dependencies=CHAT_FIRST,
)
async def patch_chat(
    caller: CallerDep,
    sessionId: str,
    chatId: str,
    body: Annotated[schemas.ChatPatch | None, Body()] = None,
) -> schemas.ChatResponse:
    services, account_id = caller
    # The fields sent, each dumped whole: ``exclude_unset`` would also drop a rule's unset
    # ``match`` (every call), and the stored rule would then fail to load (a 500).
    changes = (
        body.model_dump(include=body.model_fields_set, exclude_none=True, by_alias=False)
        if body
        else {}
    )

    def patch(db: Session) -> schemas.ChatResponse:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        if not changes:
            raise InvalidInput("Provide at least one of title, modelId or approvalRules")
        store.update_chat(chat, changes)
        return schemas.ChatResponse(chat=chat_out(chat))

    return await services.db.write_call(patch)


@router.delete(
    "/{chatId}",
    response_model=schemas.Success,
    summary="Delete a chat (not the session's only one)",
    responses=errors(400, 401, 403, 404),
)
async def delete_chat(caller: CallerDep, sessionId: str, chatId: str) -> schemas.Success:
    services, account_id = caller

    def delete(db: Session) -> None:
        sessions.get_owned(db, sessionId, account_id, for_update=True)
        chat = store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        store.delete_chat(db, chat)

    await services.db.write_call(delete)
    return schemas.Success()


@router.post(
    "/{chatId}/read",
    response_model=schemas.Success,
    summary="Mark the chat read for the caller",
    responses=errors(401, 403, 404),
)
async def mark_read(caller: CallerDep, sessionId: str, chatId: str) -> schemas.Success:
    services, account_id = caller

    def read(db: Session) -> None:
        sessions.get_owned(db, sessionId, account_id)
        store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        store.mark_read(db, account_id=account_id, chat_id=chatId)

    await services.db.write_call(read)
    return schemas.Success()
