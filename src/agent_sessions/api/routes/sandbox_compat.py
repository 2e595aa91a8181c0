"""open-agents' ``/api/sandbox…`` routes, as thin aliases of ``/api/sessions/{id}/sandbox…``.

The session is named in the query or the body (``sessionId``) instead of the path; the same
ownership rules (403/404) and the same lifecycle calls apply, and the answers have open-agents'
shapes (times in epoch milliseconds). Creating a sandbox is ensuring the session's one:
sessions are bound to their repository when they are made, so ``repoUrl`` and the like are
ignored.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import Conflict, InvalidInput
from agent_sessions.lifecycle.context import current
from agent_sessions.lifecycle.live import PROVISIONING_WAIT_SECONDS, owned
from agent_sessions.sandbox.errors import SandboxNotFound
from agent_sessions.store.lifecycle import EXPIRY_BUFFER, LifecycleView
from agent_sessions.store.models import utcnow

router = APIRouter(prefix="/api/sandbox", tags=["sandbox"])
SessionQuery = Annotated[str, Query(min_length=1, max_length=64)]
SessionBody = Annotated[schemas.SandboxSessionRef, Body()]
PROBE_SECONDS = 15.0
log = logging.getLogger(__name__)


def _ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def _lifecycle(v: LifecycleView) -> schemas.SandboxLifecycleMs:
    return schemas.SandboxLifecycleMs(
        server_time=int(time.time() * 1000), state=v.lifecycle_state,
        last_activity_at=_ms(v.last_activity_at), hibernate_after=_ms(v.hibernate_after),
        sandbox_expires_at=_ms(v.sandbox_expires_at),
    )  # fmt: skip


def _running(v: LifecycleView) -> bool:
    """Active and not about to expire (the buffer the watcher keeps before the deadline)."""
    expires = v.sandbox_expires_at
    return v.lifecycle_state == "active" and (expires is None or utcnow() < expires - EXPIRY_BUFFER)


@router.get(
    "/status",
    response_model=schemas.SandboxStatusCompat,
    summary="open-agents: the session's sandbox state (database only)",
    responses=errors(400, 401, 403, 404),
)
async def sandbox_status(caller: CallerDep, sessionId: SessionQuery) -> schemas.SandboxStatusCompat:
    services, account_id = caller
    await owned(services.db, account_id, sessionId)
    v = await services.lifecycle.status(sessionId)
    return schemas.SandboxStatusCompat(
        status="active" if _running(v) else "no_sandbox", has_snapshot=v.snapshot_url is not None,
        lifecycle_version=v.lifecycle_version, lifecycle=_lifecycle(v),
    )  # fmt: skip


@router.get(
    "/reconnect",
    response_model=schemas.SandboxReconnect,
    summary="open-agents: probe the running sandbox (`pwd`); not counted as activity",
    responses=errors(400, 401, 403, 404),
)
async def sandbox_reconnect(caller: CallerDep, sessionId: SessionQuery) -> schemas.SandboxReconnect:
    services, account_id = caller
    await owned(services.db, account_id, sessionId)
    v = await services.lifecycle.status(sessionId)
    snapshot = v.snapshot_url is not None
    if v.lifecycle_state != "active" or v.sandbox_state is None:
        return schemas.SandboxReconnect(
            status="no_sandbox", has_snapshot=snapshot, expires_at=None, lifecycle=_lifecycle(v)
        )
    try:
        box = await current().provider(v.sandbox_type).connect(v.sandbox_state)
        await box.exec("pwd", timeout=PROBE_SECONDS)
    except SandboxNotFound:  # gone: the watcher records it; the client offers a resume
        return schemas.SandboxReconnect(
            status="expired", has_snapshot=snapshot, expires_at=None, lifecycle=_lifecycle(v)
        )
    except Exception as err:  # a transient failure leaves the sandbox as it was (open-agents)
        log.warning("reconnect probe of %s failed: %s", sessionId, err)
    return schemas.SandboxReconnect(
        status="connected", has_snapshot=snapshot, expires_at=_ms(v.sandbox_expires_at),
        lifecycle=_lifecycle(v),
    )  # fmt: skip


@router.post(
    "",
    response_model=schemas.SandboxReady,
    summary="open-agents: create or resume the session's sandbox (waits until it runs)",
    responses=errors(400, 401, 403, 404, 409, 502, 504),
)
async def sandbox_create(caller: CallerDep, body: SessionBody) -> schemas.SandboxReady:
    services, account_id = caller
    await owned(services.db, account_id, body.session_id)
    began = time.monotonic()
    v = await services.lifecycle.ensure_active(body.session_id, timeout=PROVISIONING_WAIT_SECONDS)
    with contextlib.suppress(Conflict):  # hibernated again meanwhile: v is still the answer
        v = await services.lifecycle.activity(body.session_id, None)
    return schemas.SandboxReady(
        created_at=int(time.time() * 1000),
        timeout=services.settings.hard_timeout_seconds * 1000,
        current_branch=v.branch, mode=v.sandbox_type,
        timing=schemas.SandboxTiming(ready_ms=int((time.monotonic() - began) * 1000)),
    )  # fmt: skip


@router.delete(
    "",
    response_model=schemas.SandboxStopped,
    summary="open-agents: stop the session's sandbox (hibernate: snapshot, then stop)",
    responses=errors(400, 401, 403, 404, 409, 502, 504),
)
async def sandbox_delete(caller: CallerDep, body: SessionBody) -> schemas.SandboxStopped:
    services, account_id = caller
    await owned(services.db, account_id, body.session_id)
    v = await services.lifecycle.status(body.session_id)
    if v.lifecycle_state != "active":
        return schemas.SandboxStopped(already_stopped=True)
    await services.lifecycle.hibernate(body.session_id, None)
    return schemas.SandboxStopped(already_stopped=False)


@router.post(
    "/extend",
    response_model=schemas.SandboxExtended,
    summary="open-agents: push the sandbox's hard deadline back",
    responses=errors(400, 401, 403, 404, 409),
)
async def sandbox_extend(caller: CallerDep, body: SessionBody) -> schemas.SandboxExtended:
    services, account_id = caller
    await owned(services.db, account_id, body.session_id)
    v = await services.lifecycle.status(body.session_id)
    if v.lifecycle_state != "active":
        raise InvalidInput("Sandbox not initialized")
    v = await services.lifecycle.extend(body.session_id, None)
    assert v.sandbox_expires_at is not None
    return schemas.SandboxExtended(
        expires_at=int(v.sandbox_expires_at.timestamp() * 1000),
        extended_by=services.settings.extend_seconds * 1000,
    )


@router.post(
    "/activity",
    response_model=schemas.SandboxActivity,
    summary="open-agents: restart the idle deadline (only while the sandbox is active)",
    responses=errors(400, 401, 403, 404),
)
async def sandbox_activity(caller: CallerDep, body: SessionBody) -> schemas.SandboxActivity:
    services, account_id = caller
    await owned(services.db, account_id, body.session_id)
    try:
        await services.lifecycle.activity(body.session_id, None)
    except Conflict:  # not active: nothing to keep awake
        return schemas.SandboxActivity(success=False, reason="not-active")
    return schemas.SandboxActivity(success=True, reason=None)
