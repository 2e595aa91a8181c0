"""``POST /api/sessions/{sessionId}/git/push``: the session's branch to its repository.

Thin over :func:`agent_sessions.workspace.remote.push_branch` (the auto-commit code calls the
same function): the host pushes, with the token; the sandbox only writes a bundle (ADR 13).
"""

from __future__ import annotations

from fastapi import APIRouter

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.lifecycle.live import live_sandbox
from agent_sessions.store import sessions
from agent_sessions.workspace import remote

router = APIRouter(prefix="/api/sessions/{sessionId}/git", tags=["git"])


@router.post(
    "/push",
    response_model=schemas.PushResult,
    summary="Push the sandbox's current branch to the session's repository (never forced)",
    responses=errors(401, 403, 404, 409, 413, 502, 504),
)
async def push(caller: CallerDep, sessionId: str) -> schemas.PushResult:
    services, account_id = caller
    row = await services.db.query_call(lambda db: sessions.read_owned(db, sessionId, account_id))
    if row.clone_url is None:  # before a hibernated sandbox is restored for nothing
        raise remote.PushRejected(remote.NO_REPOSITORY)
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    done = await remote.push_branch(
        services.settings, services.db, services.vault, sessionId, sandbox
    )
    return schemas.PushResult(
        branch=done.branch,
        pushed=done.pushed,
        commit_sha=done.commit_sha,
        remote_url=done.remote_url,
    )
