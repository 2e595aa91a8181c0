"""``GET /healthz``: unauthenticated liveness plus a database round trip."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import literal, select

from agent_sessions import __version__
from agent_sessions.api import schemas
from agent_sessions.api.deps import ServicesDep
from agent_sessions.store.reads import Query, first

router = APIRouter(tags=["health"])
_PING = Query(select(literal(1).label("ok")))


@router.get("/healthz", response_model=schemas.Health, summary="Liveness and database check")
async def healthz(services: ServicesDep) -> schemas.Health:
    await services.db.query_call(lambda db: first(db, _PING))
    return schemas.Health(version=__version__)
