"""``/api/sessions/{sessionId}/pr``: the session's pull request on the forge (ADR 13)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.lifecycle.live import live_sandbox
from agent_sessions.sandbox import Sandbox
from agent_sessions.workspace import pulls
from agent_sessions.workspace.forge import PullRequest

router = APIRouter(prefix="/api/sessions/{sessionId}/pr", tags=["pull requests"])

# The forge's answers: 502 when it fails or refuses the token, 504 when it does not answer.
_FORGE = (502, 504)


def _fields(pr: PullRequest) -> dict[str, object]:
    checks = pr.checks
    return {
        "number": pr.number,
        "url": pr.url,
        "title": pr.title,
        "state": pr.state,
        "draft": pr.draft,
        "mergeable": pr.mergeable,
        "mergeable_state": pr.mergeable_state,
        "checks": None
        if checks is None
        else schemas.PullRequestChecks(
            total=checks.total, passed=checks.passed, failed=checks.failed, pending=checks.pending
        ),
        "head": pr.head,
        "base": pr.base,
    }


@router.post(
    "",
    response_model=schemas.PullRequestOpened,
    summary="Open the session's pull request (or answer the branch's open one)",
    description=(
        "The session's branch must be on the forge already (pushed). A title or body not "
        "given is written by the session's chat model from the branch's commits and diff, "
        "or plainly from the commit subjects when no model is configured. 409 when the session "
        "has no repository, no branch or no forge token, when its branch is the base branch, "
        "or when the forge refuses (its reason in the message)."
    ),
    responses=errors(400, 401, 403, 404, 409, *_FORGE),
)
async def open_pull_request(
    caller: CallerDep,
    sessionId: str,
    body: Annotated[schemas.PullRequestCreate | None, Body()] = None,
) -> schemas.PullRequestOpened:
    services, account_id = caller
    body = body or schemas.PullRequestCreate()

    async def sandbox() -> Sandbox:
        box, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
        return box

    opened = await pulls.open_pull_request_for(
        services.settings, services.db, sessionId, account_id,
        title=body.title, body=body.body, draft=body.draft, base=body.base, sandbox=sandbox,
    )  # fmt: skip
    return schemas.PullRequestOpened(**_fields(opened.pull_request), created=opened.created)


@router.get(
    "",
    response_model=schemas.PullRequest,
    summary="The session's pull request as the forge has it now (state, mergeable, checks)",
    responses=errors(401, 403, 404, 409, *_FORGE),
)
async def get_pull_request(caller: CallerDep, sessionId: str) -> schemas.PullRequest:
    services, account_id = caller
    pr = await pulls.read_pull_request(services.settings, services.db, sessionId, account_id)
    return schemas.PullRequest(**_fields(pr))


@router.post(
    "/merge",
    response_model=schemas.PullRequestMerged,
    summary="Merge the session's pull request",
    description=(
        "409 with the reason when it cannot be merged: closed or merged already, a draft, "
        "conflicts with its base, blocked by required checks or reviews, or refused by the forge."
    ),
    responses=errors(400, 401, 403, 404, 409, *_FORGE),
)
async def merge_pull_request(
    caller: CallerDep,
    sessionId: str,
    body: Annotated[schemas.PullRequestMerge | None, Body()] = None,
) -> schemas.PullRequestMerged:
    services, account_id = caller
    method = (body or schemas.PullRequestMerge()).method
    pr, result = await pulls.merge_pull_request(
        services.settings, services.db, sessionId, account_id, method
    )
    return schemas.PullRequestMerged(**_fields(pr), merge_commit_sha=result.sha)


@router.post(
    "/close",
    response_model=schemas.PullRequest,
    summary="Close the session's pull request without merging (409 if merged)",
    responses=errors(401, 403, 404, 409, *_FORGE),
)
async def close_pull_request(caller: CallerDep, sessionId: str) -> schemas.PullRequest:
    services, account_id = caller
    pr = await pulls.close_pull_request(services.settings, services.db, sessionId, account_id)
    return schemas.PullRequest(**_fields(pr))
