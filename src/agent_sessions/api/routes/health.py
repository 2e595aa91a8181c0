"""``GET /healthz``: unauthenticated liveness plus a database round trip."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from agent_sessions import __version__
from agent_sessions.api import schemas
from agent_sessions.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health, summary="Liveness and database check")
async def healthz(services: ServicesDep) -> schemas.Health:
    await services.db.query_call(lambda db: db.execute(text("SELECT 1")))
    return schemas.Health(version=__version__)
