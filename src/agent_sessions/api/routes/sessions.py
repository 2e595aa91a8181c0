"""``/api/sessions``: create, list, get, patch, delete (the Sessions API contract)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from agent_sessions.agent import models
from agent_sessions.api import schemas
from agent_sessions.api.convert import chat_out, session_item_out, session_out
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import Forbidden
from agent_sessions.settings import Settings
from agent_sessions.store import accounts, quotas
from agent_sessions.store import sessions as store
from agent_sessions.store.sessions import ChatsState, NewSession
from agent_sessions.workspace import remote, repo
from agent_sessions.workspace.skills import check_refs

NO_CHATS = ChatsState()

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.post(
    "",
    response_model=schemas.SessionCreated,
    summary="Create a session and its first chat",
    responses=errors(400, 401, 403, 413),
)
async def create_session(
    caller: CallerDep,
    body: Annotated[schemas.SessionCreate | None, Body()] = None,
) -> schemas.SessionCreated:
    services, account_id = caller
    body = body or schemas.SessionCreate()
    bound = _bind(services.settings, body)
    new = NewSession(
        title=body.title,
        organization_id=body.organization_id,
        artist_id=body.artist_id,
        clone_url=bound.clone_url,
        repo_owner=bound.repo_owner,
        repo_name=bound.repo_name,
        branch=bound.branch,
        base_branch=bound.base_branch,
        is_new_branch=bound.is_new_branch,
        auto_commit_push=body.auto_commit_push,
        auto_create_pr=body.auto_create_pr,
        global_skill_refs=tuple(check_refs(services.settings, body.skill_refs())),
        sandbox_type=body.sandbox_type or services.settings.sandbox_provider,
    )

    def create(db: Session) -> schemas.SessionCreated:
        if new.organization_id is not None and not accounts.is_member(
            db, organization_id=new.organization_id, account_id=account_id
        ):
            raise Forbidden("You are not a member of this organization")
        quotas.lock_account(db, account_id)
        quotas.require_sandbox_room(db, account_id, services.settings.account_max_live_sandboxes)
        first_model = models.default_model_for(db, services.settings, account_id)
        row, chat = store.create_session(
            db, account_id=account_id, new=replace(new, model_id=first_model)
        )
        return schemas.SessionCreated(session=session_out(row), chat=chat_out(chat))

    out = await services.db.write_call(create)
    await services.lifecycle.session_created(out.session.id)
    return out


def _bind(settings: Settings, body: schemas.SessionCreate) -> repo.Binding:
    """The repository binding, checked against the settings (``allowLocalRepos``): a broken
    rule answers 400 with the field's path, like the schema's own checks."""
    try:
        return repo.bind(
            settings,
            clone_url=body.clone_url,
            repo_owner=body.repo_owner,
            repo_name=body.repo_name,
            branch=body.branch,
            is_new_branch=body.is_new_branch,
            auto_commit_push=body.auto_commit_push,
            auto_create_pr=body.auto_create_pr,
        )
    except repo.BindingError as err:
        error = {"type": "value_error", "loc": ("body", err.field), "msg": err.message}
        raise RequestValidationError([error]) from None


@router.get(
    "",
    response_model=schemas.SessionList,
    summary="List the caller's sessions, newest first",
    responses=errors(400, 401),
)
async def list_sessions(
    caller: CallerDep,
    status: Literal["active", "archived", "all"] = "active",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    offset: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> schemas.SessionList:
    """Paged by ``cursor`` (``nextCursor``) or by ``offset`` (``pagination.nextOffset``), as
    the reference web app does; three queries whatever the page's size: the page, its chats'
    state, the archived count."""
    services, account_id = caller

    def page(db: Session) -> schemas.SessionList:
        found = store.list_sessions(
            db, account_id=account_id, status=status, limit=limit, cursor=cursor,
            offset=offset or 0,
        )  # fmt: skip
        state = store.chats_state(db, account_id, [r.id for r in found.rows])
        at = None if cursor else offset or 0
        return schemas.SessionList(
            sessions=[session_item_out(r, state.get(r.id, NO_CHATS)) for r in found.rows],
            next_cursor=found.next_cursor,
            archived_count=store.archived_count(db, account_id),
            pagination=schemas.Pagination(
                limit=limit,
                offset=at,
                has_more=found.has_more,
                next_offset=None if at is None else at + len(found.rows),
            ),
        )

    return await services.db.read_call(page)


@router.get(
    "/{sessionId}",
    response_model=schemas.SessionResponse,
    summary="Get session by id",
    responses=errors(401, 403, 404),
)
async def get_session(caller: CallerDep, sessionId: str) -> Response:
    services, account_id = caller
    row = await services.db.query_call(lambda db: store.read_owned(db, sessionId, account_id))
    # Rendered here: FastAPI would validate the model it was just built from, then render it
    # the same way (the hot path; response_model above still documents it).
    body = schemas.SessionResponse(session=session_out(row)).model_dump_json()
    return Response(body, media_type="application/json")


@router.patch(
    "/{sessionId}",
    response_model=schemas.SessionResponse,
    summary="Update title, status or line counts; archive and unarchive",
    responses=errors(400, 401, 403, 404, 409, 413),
)
async def patch_session(
    caller: CallerDep,
    sessionId: str,
    body: Annotated[schemas.SessionPatch | None, Body()] = None,
) -> schemas.SessionResponse:
    services, account_id = caller
    changes = body.model_dump(exclude_unset=True, by_alias=False) if body else {}

    def patch(db: Session) -> tuple[schemas.SessionResponse, store.PatchEffect]:
        row = store.get_owned(db, sessionId, account_id, for_update=True)
        effect = store.apply_patch(row, changes)
        return schemas.SessionResponse(session=session_out(row)), effect

    out, effect = await services.db.write_call(patch)
    if effect.archived:
        await services.lifecycle.session_archived(sessionId, out.session.lifecycle_version)
    return out


@router.delete(
    "/{sessionId}",
    response_model=schemas.Success,
    summary="Delete a session, its sandbox, snapshots, chats and messages",
    responses=errors(401, 403, 404),
)
async def delete_session(caller: CallerDep, sessionId: str) -> schemas.Success:
    services, account_id = caller

    def delete(db: Session) -> tuple[str, dict[str, Any] | None, str | None]:
        row = store.get_owned(db, sessionId, account_id, for_update=True)
        leftovers = (row.sandbox_type, row.sandbox_state, row.snapshot_url)
        store.delete_session(db, row)
        return leftovers

    leftovers = await services.db.write_call(delete)
    await remote.forget(services.settings, sessionId)
    await services.lifecycle.session_deleted(sessionId, *leftovers)
    return schemas.Success()
