"""``GET /api/runs``: the caller's agent runs, newest first, with their reply text."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.api.routes.turns import run_out

router = APIRouter(prefix="/api", tags=["agent"])

RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]


@router.get(
    "/runs",
    response_model=schemas.RunList,
    summary="The caller's runs, newest first (?status= filters; ?limit=&offset= pages)",
    responses=errors(400, 401),
)
async def list_runs(
    caller: CallerDep,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> schemas.RunList:
    services, account_id = caller
    runs, more = await services.turns.list_runs(
        account_id, status=status, limit=limit, offset=offset
    )
    return schemas.RunList(
        runs=[run_out(run, text) for run, text in runs],
        pagination=schemas.Pagination(
            limit=limit, offset=offset, has_more=more, next_offset=offset + limit if more else None
        ),
    )
