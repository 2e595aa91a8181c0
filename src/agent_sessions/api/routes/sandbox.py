"""``/api/sessions/{sessionId}/sandbox``: lifecycle status and the four lifecycle actions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from agent_sessions.api import schemas
from agent_sessions.api.deps import AccountId, ServicesDep
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


async def _owned(services: ServicesDep, account_id: str, session_id: str) -> None:
    await services.db.query_call(lambda db: sessions.read_owned(db, session_id, account_id))


@router.get(
    "",
    response_model=schemas.SandboxState,
    summary="Lifecycle state of the session's sandbox (database only, cheap)",
    responses=errors(401, 403, 404),
)
async def sandbox_status(
    services: ServicesDep, account_id: AccountId, sessionId: str
) -> schemas.SandboxState:
    await _owned(services, account_id, sessionId)
    status = await services.lifecycle.status(sessionId)
    return _out(status.view)


def _expected(body: schemas.LifecycleAction | None) -> int | None:
    return body.expected_lifecycle_version if body else None


@router.post(
    "/hibernate",
    response_model=schemas.SandboxState,
    summary="Snapshot and stop the sandbox now",
    responses=errors(400, 401, 403, 404, 409, 502, 504),
)
async def hibernate(
    services: ServicesDep, account_id: AccountId, sessionId: str, body: VersionBody = None
) -> schemas.SandboxState:
    await _owned(services, account_id, sessionId)
    return _out(await services.lifecycle.hibernate(sessionId, _expected(body)))


@router.post(
    "/resume",
    response_model=schemas.SandboxState,
    summary="Restore a hibernated sandbox (no-op when active)",
    responses=errors(400, 401, 403, 404, 409, 502, 504),
)
async def resume(
    services: ServicesDep, account_id: AccountId, sessionId: str, body: VersionBody = None
) -> schemas.SandboxState:
    await _owned(services, account_id, sessionId)
    return _out(await services.lifecycle.resume(sessionId, _expected(body)))


@router.post(
    "/extend",
    response_model=schemas.SandboxState,
    summary="Push the hard deadline back",
    responses=errors(400, 401, 403, 404, 409),
)
async def extend(
    services: ServicesDep, account_id: AccountId, sessionId: str, body: VersionBody = None
) -> schemas.SandboxState:
    await _owned(services, account_id, sessionId)
    return _out(await services.lifecycle.extend(sessionId, _expected(body)))


@router.post(
    "/activity",
    response_model=schemas.SandboxState,
    summary="Record activity: the idle deadline restarts",
    responses=errors(400, 401, 403, 404, 409),
)
async def activity(
    services: ServicesDep, account_id: AccountId, sessionId: str, body: VersionBody = None
) -> schemas.SandboxState:
    await _owned(services, account_id, sessionId)
    return _out(await services.lifecycle.activity(sessionId, _expected(body)))
