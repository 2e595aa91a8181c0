"""``/api/sessions``: create, list, get, patch, delete (DESIGN §3 "Sessions")."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query

from agent_sessions.api import schemas
from agent_sessions.api.convert import chat_out, session_out
from agent_sessions.api.deps import AccountId, ServicesDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import Forbidden
from agent_sessions.store import accounts
from agent_sessions.store import sessions as store
from agent_sessions.store.sessions import NewSession

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.post(
    "",
    response_model=schemas.SessionCreated,
    summary="Create a session and its first chat",
    responses=errors(400, 401, 403, 413),
)
def create_session(
    services: ServicesDep,
    account_id: AccountId,
    body: Annotated[schemas.SessionCreate | None, Body()] = None,
) -> schemas.SessionCreated:
    body = body or schemas.SessionCreate()
    new = NewSession(
        title=body.title,
        organization_id=body.organization_id,
        artist_id=body.artist_id,
        clone_url=body.clone_url,
        branch=body.branch,
        is_new_branch=body.is_new_branch,
        global_skill_refs=tuple(body.global_skill_refs),
        sandbox_type=body.sandbox_type or services.settings.sandbox_provider,
    )
    with services.db.write() as db:
        if new.organization_id is not None and not accounts.is_member(
            db, organization_id=new.organization_id, account_id=account_id
        ):
            raise Forbidden("You are not a member of this organization")
        row, chat = store.create_session(db, account_id=account_id, new=new)
        out = schemas.SessionCreated(session=session_out(row), chat=chat_out(chat))
    services.lifecycle.session_created(row.id)
    return out


@router.get(
    "",
    response_model=schemas.SessionList,
    summary="List the caller's sessions, newest first",
    responses=errors(400, 401),
)
def list_sessions(
    services: ServicesDep,
    account_id: AccountId,
    status: Literal["active", "archived", "all"] = "active",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> schemas.SessionList:
    with services.db.read() as db:
        rows, next_cursor = store.list_sessions(
            db, account_id=account_id, status=status, limit=limit, cursor=cursor
        )
        return schemas.SessionList(sessions=[session_out(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/{sessionId}",
    response_model=schemas.SessionResponse,
    summary="Get session by id",
    responses=errors(401, 403, 404),
)
def get_session(
    services: ServicesDep, account_id: AccountId, sessionId: str
) -> schemas.SessionResponse:
    with services.db.read() as db:
        return schemas.SessionResponse(
            session=session_out(store.get_owned(db, sessionId, account_id))
        )


@router.patch(
    "/{sessionId}",
    response_model=schemas.SessionResponse,
    summary="Update title, status or line counts; archive and unarchive",
    responses=errors(400, 401, 403, 404, 409, 413),
)
def patch_session(
    services: ServicesDep,
    account_id: AccountId,
    sessionId: str,
    body: Annotated[schemas.SessionPatch | None, Body()] = None,
) -> schemas.SessionResponse:
    changes = body.model_dump(exclude_unset=True, by_alias=False) if body else {}
    with services.db.write() as db:
        row = store.get_owned(db, sessionId, account_id, for_update=True)
        effect = store.apply_patch(row, changes)
        out = schemas.SessionResponse(session=session_out(row))
    if effect.archived:
        services.lifecycle.session_archived(sessionId, out.session.lifecycle_version)
    return out


@router.delete(
    "/{sessionId}",
    response_model=schemas.Success,
    summary="Delete a session, its sandbox, snapshots, chats and messages",
    responses=errors(401, 403, 404),
)
def delete_session(services: ServicesDep, account_id: AccountId, sessionId: str) -> schemas.Success:
    with services.db.write() as db:
        row = store.get_owned(db, sessionId, account_id, for_update=True)
        leftovers = (row.sandbox_type, row.sandbox_state, row.snapshot_url)
        store.delete_session(db, row)
    services.lifecycle.session_deleted(sessionId, *leftovers)
    return schemas.Success()
