"""``/api/sessions/{sessionId}/sandbox``: lifecycle status and the four lifecycle actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep, Services
from agent_sessions.api.responses import errors
from agent_sessions.store import sessions
from agent_sessions.store.lifecycle import LifecycleView
from agent_sessions.store.models import utcnow

router = APIRouter(prefix="/api/sessions/{sessionId}/sandbox", tags=["sandbox"])
VersionBody = Annotated[schemas.LifecycleAction | None, Body()]


def _out(v: LifecycleView) -> schemas.SandboxState:
    return schemas.SandboxState(
        lifecycle_state=v.lifecycle_state,
        lifecycle_version=v.lifecycle_version,
        last_activity_at=v.last_activity_at,
        hibernate_after=v.hibernate_after,
        sandbox_expires_at=v.sandbox_expires_at,
        has_snapshot=v.snapshot_url is not None,
        lifecycle_error=v.lifecycle_error,
        server_time=utcnow(),
    )


async def _owned(services: Services, account_id: str, session_id: str) -> None:
    await services.db.query_call(lambda db: sessions.read_owned(db, session_id, account_id))


@router.get(
    "",
    response_model=schemas.SandboxState,
    summary="Lifecycle state of the session's sandbox (database only, cheap)",
    responses=errors(401, 403, 404),
)
async def sandbox_status(caller: CallerDep, sessionId: str) -> schemas.SandboxState:
    services, account_id = caller
    await _owned(services, account_id, sessionId)
    return _out(await services.lifecycle.status(sessionId))


# The four actions share one shape: ownership check, optional expectedLifecycleVersion (409 on
# mismatch), then the lifecycle method of the same name; they answer the new state.
# name → (summary, error codes beyond the common ones)
_ACTIONS: dict[str, tuple[str, tuple[int, ...]]] = {
    "hibernate": ("Snapshot and stop the sandbox now", (502, 504)),
    "resume": ("Restore a hibernated sandbox (no-op when active)", (502, 504)),
    "extend": ("Push the hard deadline back", ()),
    "activity": ("Record activity: the idle deadline restarts", ()),
}


def _action_route(name: str) -> Callable[..., Awaitable[schemas.SandboxState]]:
    async def run(
        caller: CallerDep, sessionId: str, body: VersionBody = None
    ) -> schemas.SandboxState:
        services, account_id = caller
        await _owned(services, account_id, sessionId)
        expected = body.expected_lifecycle_version if body else None
        action: Callable[[str, int | None], Awaitable[LifecycleView]]
        action = getattr(services.lifecycle, name)
        return _out(await action(sessionId, expected))

    return run


for _name, (_summary, _extra) in _ACTIONS.items():
    router.add_api_route(
        f"/{_name}",
        _action_route(_name),
        methods=["POST"],
        name=_name,
        response_model=schemas.SandboxState,
        summary=_summary,
        responses=errors(400, 401, 403, 404, 409, *_extra),
    )
