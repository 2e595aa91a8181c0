"""``/api/account/…``: the caller's forge token (set, replace, delete, and whether there is one;
never what it is: no response holds a token, ADR 13) and default model."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from agent_sessions.agent import models
from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep, Services
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import NotFound
from agent_sessions.store import accounts
from agent_sessions.workspace import credentials

router = APIRouter(prefix="/api/account", tags=["account"])
NOTHING_SET = "No forge token is set for this account"
NO_DEFAULT_MODEL = "No default model is set for this account"


def _status(services: Services, account_id: str, db: Session) -> schemas.ForgeTokenStatus:
    status = credentials.token_status(
        db, services.vault, account_id, operator=services.settings.forge_token is not None
    )
    return schemas.ForgeTokenStatus(
        configured=status.configured,
        source=status.source,
        login=status.login,
        updated_at=status.updated_at,
    )


@router.get(
    "/forge-token",
    response_model=schemas.ForgeTokenStatus,
    summary="Whether a forge token is set for the caller (the account's own or the operator's)",
    responses=errors(401),
)
async def get_forge_token(caller: CallerDep) -> schemas.ForgeTokenStatus:
    services, account_id = caller
    return await services.db.read_call(lambda db: _status(services, account_id, db))


@router.put(
    "/forge-token",
    response_model=schemas.ForgeTokenStatus,
    summary="Set or replace the caller's forge token (stored encrypted, never returned)",
    responses=errors(400, 401, 413),
)
async def put_forge_token(
    caller: CallerDep, body: schemas.ForgeTokenSet
) -> schemas.ForgeTokenStatus:
    services, account_id = caller

    def store(db: Session) -> schemas.ForgeTokenStatus:
        credentials.set_token(db, services.vault, account_id, body.token, login=None)
        db.flush()
        return _status(services, account_id, db)

    return await services.db.write_call(store)


@router.delete(
    "/forge-token",
    status_code=204,
    response_class=Response,
    summary="Delete the caller's forge token (the operator's, if any, applies again)",
    responses=errors(401, 404),
)
async def delete_forge_token(caller: CallerDep) -> Response:
    services, account_id = caller

    def delete(db: Session) -> bool:
        return credentials.delete_token(db, account_id)

    if not await services.db.write_call(delete):
        raise NotFound(NOTHING_SET)
    return Response(status_code=204)


def _default_model(services: Services, own: str | None) -> schemas.DefaultModel:
    return schemas.DefaultModel(
        model_id=models.effective_default(services.settings, own),
        source="account" if own is not None else "operator",
    )


@router.get(
    "/default-model",
    response_model=schemas.DefaultModel,
    summary="The model of the caller's new chats and of turns that name none",
    responses=errors(401),
)
async def get_default_model(caller: CallerDep) -> schemas.DefaultModel:
    services, account_id = caller
    own = await services.db.query_call(lambda r: accounts.default_model_of(r, account_id))
    return _default_model(services, own)


@router.put(
    "/default-model",
    response_model=schemas.DefaultModel,
    summary="Set the caller's default model (400 when this server cannot use it)",
    responses=errors(400, 401, 413),
)
async def put_default_model(
    caller: CallerDep, body: schemas.DefaultModelSet
) -> schemas.DefaultModel:
    services, account_id = caller
    models.check_usable(services.settings, body.model_id)  # before anything is stored

    def store(db: Session) -> None:
        accounts.set_default_model(db, account_id, body.model_id)

    await services.db.write_call(store)
    return _default_model(services, body.model_id)


@router.delete(
    "/default-model",
    status_code=204,
    response_class=Response,
    summary="Clear the caller's default model (the server's applies again)",
    responses=errors(401, 404),
)
async def delete_default_model(caller: CallerDep) -> Response:
    services, account_id = caller

    def clear(db: Session) -> bool:
        return accounts.set_default_model(db, account_id, None)

    if not await services.db.write_call(clear):
        raise NotFound(NO_DEFAULT_MODEL)
    return Response(status_code=204)
