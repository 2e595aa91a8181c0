"""``/api/account/forge-token``: the caller's forge token: set, replace, delete, and whether
there is one (never what it is: no response holds a token, ADR 13)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep, Services
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import NotFound
from agent_sessions.workspace import credentials

router = APIRouter(prefix="/api/account", tags=["account"])
NOTHING_SET = "No forge token is set for this account"


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
