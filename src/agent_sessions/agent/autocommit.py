"""Auto-commit and auto-push: a turn that completed and left the tree dirty ends with a commit,
pushed to the session's repository (ADR 13).

Only for a session with ``autoCommitPush``, only after a turn that ended by itself (not
stopped, not failed). The commit is a DBOS step, the push another, the report a third, so a
recovered turn neither commits twice nor loses the report; a push run again pushes nothing
new (the remote branch is already at the commit) and still reports it pushed. The push is
``workspace.remote.push_branch``: host-side, never forced; a rejection (the remote branch
moved) is reported, never retried.

The client sees a ``data-commit`` part (id ``commit``), also stored in the chat's assistant
message: ``{"status": "pending"}`` while the commit and the push run, then one of

* ``{"status": "success", "commitSha", "message", "branch", "filesChanged", "pushed", …}``:
  the commit was made. ``status`` speaks of the commit only; the push is told by ``pushed``
  and exactly one of ``remoteUrl`` (``pushed: true``: the remote branch holds the commit),
  ``pushError`` (``pushed: false``: the push was tried and failed or was refused, the reason)
  or ``pushSkipped`` (``pushed: false``: no push was tried, the reason: the session has no
  repository);
* ``{"status": "skipped", "error"}``: nothing was committed (no repository in the
  workspace, the tree was cleaned meanwhile);
* ``{"status": "error", "error"}``: the commit failed (nothing was pushed).

After a push (or a turn that committed nothing), :mod:`.autopr` may open the pull request. A
failure of any of it is reported in its part and never fails the turn.
"""

from __future__ import annotations

import logging
from typing import Any

from dbos import DBOS

from agent_sessions.agent import autopr
from agent_sessions.agent.deps import TurnDeps
from agent_sessions.agent.sink import ChunkSink
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.faults import fault_point
from agent_sessions.lifecycle.context import current
from agent_sessions.store import turns as store
from agent_sessions.workspace import git, remote

__all__ = ["PART_ID", "PART_TYPE", "after_turn"]

log = logging.getLogger(__name__)

PART_TYPE = "data-commit"
PART_ID = "commit"


async def after_turn(run: store.RunView, deps: TurnDeps) -> None:
    """Commit and push what a completed turn changed, then open the pull request if asked.
    The caller checked the session's setting (read by the turn's first step) and the turn's
    status."""
    if deps.sink is None:
        return
    result = await _commit(run.session_id, run.model_id, deps)
    if result is not None:
        if result["status"] == "success":
            result.update(await _push(run.session_id, deps))
        await _report(deps.sink, result)
    if result is None or result.get("pushed") is True:
        await autopr.after_push(run, deps, pushed=result is not None)


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


@DBOS.step(name="auto_push")
async def _push(session_id: str, deps: TurnDeps) -> dict[str, Any]:
    """Push the branch just committed; the push's fields of the commit part."""
    ctx = current()
    try:
        ship = await ctx.db.read_call(lambda s: store.auto_ship_of(s, session_id))
        if ship is None or ship.clone_url is None:
            return {"pushed": False, "pushSkipped": remote.NO_REPOSITORY}
        sandbox = await deps.sandbox()
        done = await remote.push_branch(ctx.settings, ctx.db, ctx.vault, session_id, sandbox)
        fault_point("auto-push.pushed")
        # ``done.pushed`` is False when the remote already had the commit (a re-run): it is
        # there all the same.
        return {"pushed": True, "remoteUrl": done.remote_url}
    except AgentSessionsError as err:
        log.warning("auto-push of session %s failed: %s", session_id, err.message)
        return {"pushed": False, "pushError": err.message}
    except Exception as err:
        log.exception("auto-push of session %s failed", session_id)
        return {"pushed": False, "pushError": f"The push failed: {type(err).__name__}"}


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
    await sink.emit_stored({"type": PART_TYPE, "id": PART_ID, "data": data})
