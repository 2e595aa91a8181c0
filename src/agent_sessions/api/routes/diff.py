"""``/api/sessions/{sessionId}/diff``: the workspace's diff, live or as last cached."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import NotFound
from agent_sessions.lifecycle.live import live_sandbox
from agent_sessions.store import sessions
from agent_sessions.workspace.cached_diff import computed_and_cached

router = APIRouter(prefix="/api/sessions/{sessionId}/diff", tags=["workspace"])


@router.get(
    "",
    response_model=schemas.Diff,
    summary="The workspace's diff against its base (restores a hibernated sandbox)",
    description="Base: the merge-base of HEAD with origin's default branch, else HEAD. "
    "Uncommitted and untracked changes are included. The result also becomes the "
    "session's cached diff (``cachedDiff``, ``linesAdded``, ``linesRemoved``).",
    responses=errors(401, 403, 404, 409, 502, 504),
)
async def live_diff(caller: CallerDep, sessionId: str) -> dict[str, Any]:
    services, account_id = caller
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    return await computed_and_cached(
        services.db, sessionId, sandbox, services.settings.diff_max_bytes
    )


@router.get(
    "/cached",
    response_model=schemas.CachedDiff,
    summary="The diff as last computed (database only; works while hibernated)",
    description="Refreshed after every turn that ran a tool that can change the workspace, "
    "before every hibernation and by every live "
    "``GET …/diff``. 404 when none was computed yet.",
    responses=errors(401, 403, 404),
)
async def cached_diff(caller: CallerDep, sessionId: str) -> dict[str, Any]:
    services, account_id = caller
    row = await services.db.query_call(lambda db: sessions.read_owned(db, sessionId, account_id))
    if row.cached_diff is None or row.cached_diff_updated_at is None:
        raise NotFound("No cached diff")
    return {**row.cached_diff, "cachedAt": row.cached_diff_updated_at}
