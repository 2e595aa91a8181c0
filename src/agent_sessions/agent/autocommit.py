"""Auto-commit: a turn that completed and left the tree dirty ends with a commit (ADR 13).

Only for a session with ``autoCommitPush``, only after a turn that ended by itself (not
stopped, not failed). The commit is a DBOS step, its report another, so a recovered turn
neither commits twice nor loses the report. The client sees a ``data-commit`` part (id
``commit``): ``pending`` while it runs, then ``success`` (sha, message, branch, files, and
whether it was pushed), ``error`` or ``skipped``; the same part is stored in the chat's
assistant message. A failure is reported in the part and never fails the turn.
"""

from __future__ import annotations

import logging
from typing import Any

from dbos import DBOS

from agent_sessions.agent.deps import TurnDeps
from agent_sessions.agent.stream import ChunkSink
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.faults import fault_point
from agent_sessions.lifecycle.context import current
from agent_sessions.store import turns as store
from agent_sessions.workspace import git

__all__ = ["PART_ID", "after_turn", "push_after_commit"]

log = logging.getLogger(__name__)

PART_TYPE = "data-commit"
PART_ID = "commit"


async def after_turn(run: store.RunView, deps: TurnDeps) -> None:
    """Commit (and, once it exists, push) what a completed turn changed. The caller checked
    the session's setting (read by the turn's first step) and the turn's status."""
    if deps.sink is None:
        return
    result = await _commit(run.session_id, run.model_id, deps)
    if result is None:
        return
    if result["status"] == "success":
        result.update(await push_after_commit(run, deps, result))
    await _report(deps.sink, result)


async def push_after_commit(
    run: store.RunView, deps: TurnDeps, commit: dict[str, Any]
) -> dict[str, Any]:
    """Where the push of the commit goes (a DBOS step of its own, through
    ``workspace.remote.push_branch``, never a force push). That function does not exist yet:
    until it does the commit is reported as not pushed, and nothing claims a push happened."""
    return {"pushed": False}


@DBOS.step(name="auto_commit")
async def _commit(session_id: str, model_id: str, deps: TurnDeps) -> dict[str, Any] | None:
    """The commit, or None when there is nothing to do (the tree is clean).

    Run again after a crash, it may find its own commit made and the tree clean: the pending
    part the first attempt showed then reports HEAD's commit instead of staying pending.
    """
    assert deps.sink is not None
    ctx = current()
    try:
        _, title = await ctx.db.read_call(lambda s: store.auto_commit_of(s, session_id))
        sandbox = await deps.sandbox()
        state = await git.status(sandbox)
        if not state.has_uncommitted_changes:
            shown = _shown(deps.sink)
            if shown is None or shown.get("status") != "pending":
                return None
            head = await git.head_commit(sandbox)
            return _success(head) if head is not None else None
        await _emit(deps.sink, {"status": "pending"})
        done = await git.commit(sandbox, ctx.settings, message=None, model_id=model_id, title=title)
        fault_point("auto-commit.committed")
        return _success(done)
    except git.NoRepository as err:
        return {"status": "skipped", "error": err.message}
    except git.NothingToCommit as err:  # the tree was cleaned in between
        return {"status": "skipped", "error": err.message}
    except AgentSessionsError as err:
        log.warning("auto-commit of session %s failed: %s", session_id, err.message)
        return {"status": "error", "error": err.message}
    except Exception as err:
        log.exception("auto-commit of session %s failed", session_id)
        return {"status": "error", "error": f"The commit failed: {err or type(err).__name__}"}


@DBOS.step(name="auto_commit_report")
async def _report(sink: ChunkSink, data: dict[str, Any]) -> None:
    await _emit(sink, data)


def _success(done: git.CommitResult) -> dict[str, Any]:
    return {
        "status": "success", "commitSha": done.commit_sha, "message": done.message,
        "branch": done.branch, "filesChanged": done.files_changed,
    }  # fmt: skip


def _shown(sink: ChunkSink) -> dict[str, Any] | None:
    """The data of the commit part the message holds already (from a crashed attempt)."""
    for part in sink.builder.parts:
        if part.get("type") == PART_TYPE and part.get("id") == PART_ID:
            data: dict[str, Any] = part.get("data") or {}
            return data
    return None


async def _emit(sink: ChunkSink, data: dict[str, Any]) -> None:
    """Send the part and store the message now (not at the end of the turn): a client that
    reloads the chat meanwhile sees where the commit is."""
    await sink.emit({"type": PART_TYPE, "id": PART_ID, "data": data})
    await sink.persist()
