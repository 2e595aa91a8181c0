"""``/api/sessions/{sessionId}/git/…`` and ``…/discard-uncommitted``: git in the sandbox.

Every route works on the live sandbox (a hibernated one is restored first) and runs its git
there (``workspace/git.py``). Pushing is ``…/git/push`` (``workspace/remote.py``), elsewhere.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from sqlalchemy.orm import Session

from agent_sessions.agent import models
from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import Conflict
from agent_sessions.lifecycle.live import live_sandbox
from agent_sessions.store import Database, chats, sessions
from agent_sessions.store import lifecycle as cas
from agent_sessions.workspace import git, textgen

router = APIRouter(prefix="/api/sessions/{sessionId}", tags=["git"])
LIVE = (401, 403, 404, 409, 502, 504)
"""What a live route may answer: 409 while provisioning, 502/504 when a restore fails (the
write rate's 429 is added to every write by the app)."""


def status_out(s: git.GitStatus) -> schemas.GitStatus:
    return schemas.GitStatus(
        branch=s.branch, head_sha=s.head_sha, detached=s.detached, upstream=s.upstream,
        ahead=s.ahead, behind=s.behind, staged=s.staged, unstaged=s.unstaged,
        untracked=s.untracked, conflicted=s.conflicted,
        has_uncommitted_changes=s.has_uncommitted_changes,
        has_unpushed_commits=s.has_unpushed_commits, truncated=s.truncated,
    )  # fmt: skip


@router.get(
    "/git/status",
    response_model=schemas.GitStatus,
    summary="Branch, upstream, ahead/behind and change counts (409 without a repository)",
    responses=errors(*LIVE),
)
async def git_status(caller: CallerDep, sessionId: str) -> schemas.GitStatus:
    services, account_id = caller
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    return status_out(await git.status(sandbox))


@router.post(
    "/git/commit",
    response_model=schemas.GitCommit,
    summary="Stage everything and commit it (the chat's model writes the message if none)",
    responses=errors(400, *LIVE),
)
async def git_commit(
    caller: CallerDep,
    sessionId: str,
    body: Annotated[schemas.GitCommitRequest | None, Body()] = None,
) -> schemas.GitCommit:
    services, account_id = caller
    request = body or schemas.GitCommitRequest()
    settings = services.settings

    def writer(db: Session) -> tuple[str, str]:
        """The session's title and the model that writes the message."""
        row = sessions.get_owned(db, sessionId, account_id)
        chat = None
        if request.chat_id is not None:
            chat = chats.get_chat(
                db, account_id=account_id, session_id=sessionId, chat_id=request.chat_id
            )
        default = models.default_model_for(db, settings, account_id)
        return row.title, textgen.session_model(db, sessionId, default, chat)

    title, model_id = await services.db.read_call(writer)
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    done = await git.commit(
        sandbox, settings, message=request.message, model_id=model_id, title=title
    )
    return schemas.GitCommit(
        commit_sha=done.commit_sha, message=done.message, branch=done.branch,
        files_changed=done.files_changed,
    )  # fmt: skip


async def _no_live_turn(db: Database, session_id: str) -> None:
    if await db.read_call(lambda s: cas.has_live_turn(s, session_id)):
        raise Conflict("A turn is running in this session: stop it before discarding changes")


@router.post(
    "/discard-uncommitted",
    response_model=schemas.DiscardResult,
    summary="Throw away uncommitted changes: one path, or everything (409 while a turn runs)",
    responses=errors(400, *LIVE),
)
async def discard_uncommitted(
    caller: CallerDep,
    sessionId: str,
    body: Annotated[schemas.DiscardRequest | None, Body()] = None,
) -> schemas.DiscardResult:
    services, account_id = caller
    path = body.file_path if body is not None else None
    await services.db.query_call(lambda r: sessions.read_owned(r, sessionId, account_id))
    if path is not None:
        path = git.check_path(path)
    await _no_live_turn(services.db, sessionId)
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    await _no_live_turn(services.db, sessionId)  # again: a turn may have started meanwhile
    status = await git.discard(sandbox, path)
    return schemas.DiscardResult(discarded=path, git_status=status_out(status))
