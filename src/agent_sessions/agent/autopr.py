"""Auto-PR: after a turn's auto-push, the session's pull request is opened, or its open one
reused (ADR 13; the reference product's rules, where they fit).

Only for a session with ``autoCreatePr`` (and ``autoCommitPush``: it runs after the auto-commit
of :mod:`.autocommit`). It runs

* after an auto-push that put the turn's commit on the remote;
* after a turn that committed nothing, only while the session has no pull request yet and its
  branch is on the remote as it is in the sandbox (a first pull request that failed before, or
  a branch pushed by hand): then nothing is shown unless a pull request is opened.

It is skipped (and, after a push, says why) when HEAD is not on a branch, the branch is the
base, the branch is not on the remote as it is here, it has no commits the base lacks, or the
repository is not on the forge (no ``repoOwner``/``repoName``). The base is the session's
``baseBranch`` (the branch a new branch was made from), else the repository's default branch.
An open pull request of the branch is reused, never a second one opened; the title and body of
a new one are written by the chat's model (``workspace.pulls.open_pull_request_for``, which also
stores ``prNumber``/``prStatus``).

The client sees a ``data-pr`` part (id ``pr``), also stored in the chat's assistant message:
``{"status": "pending"}`` while the forge is asked, then ``{"status": "success", "number",
"url", "title", "created"}`` (``created: false``: the open one was reused), ``{"status":
"skipped", "error"}`` (the reason) or ``{"status": "error", "error"}``. Opening is a DBOS step
and so is the report; run again after a crash, the step finds the pull request the first
attempt opened and reports it (``created: false``). A failure never fails the turn.
"""

from __future__ import annotations

import logging
from typing import Any

from dbos import DBOS

from agent_sessions.agent.deps import TurnDeps
from agent_sessions.agent.sink import ChunkSink
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.faults import fault_point
from agent_sessions.lifecycle.context import current
from agent_sessions.store import turns as store
from agent_sessions.workspace import pulls

__all__ = ["PART_ID", "PART_TYPE", "after_push"]

log = logging.getLogger(__name__)

PART_TYPE = "data-pr"
PART_ID = "pr"
NOT_ON_FORGE = (
    "The session's repository is not on the forge (no repoOwner/repoName): no pull request "
    "can be opened there"
)


async def after_push(run: store.RunView, deps: TurnDeps, *, pushed: bool) -> None:
    """Open (or reuse) the pull request; ``pushed``: the turn's commit was just pushed (else
    the turn committed nothing)."""
    if deps.sink is None:
        return
    result = await _open(run.session_id, run.account_id, deps, pushed)
    if result is not None:
        await _report(deps.sink, result)


@DBOS.step(name="auto_pr")
async def _open(
    session_id: str, account_id: str, deps: TurnDeps, pushed: bool
) -> dict[str, Any] | None:
    """The part's final data, or None when there is nothing to show."""
    assert deps.sink is not None
    ctx = current()

    def skipped(reason: str) -> dict[str, Any] | None:
        return {"status": "skipped", "error": reason} if pushed else None

    try:
        ship = await ctx.db.read_call(lambda s: store.auto_ship_of(s, session_id))
        if ship is None or not ship.auto_create_pr or ship.clone_url is None:
            return None
        if not pushed and ship.pr_number is not None:
            return None
        if not ship.on_forge:
            return skipped(NOT_ON_FORGE)
        ready = await pulls.branch_readiness(await deps.sandbox(), ship.base_branch)
        if (problem := ready.problem()) is not None:
            return skipped(problem)
        await _emit(deps.sink, {"status": "pending"})
        opened = await pulls.open_pull_request_for(
            ctx.settings, ctx.db, session_id, account_id,
            base=ship.base_branch, sandbox=deps.sandbox,
        )  # fmt: skip
        fault_point("auto-pr.opened")
    except AgentSessionsError as err:
        log.warning("auto-PR of session %s failed: %s", session_id, err.message)
        return {"status": "error", "error": err.message}
    except Exception as err:
        log.exception("auto-PR of session %s failed", session_id)
        failed = f"Opening the pull request failed: {type(err).__name__}"
        return {"status": "error", "error": failed}
    pr = opened.pull_request
    return {
        "status": "success", "number": pr.number, "url": pr.url, "title": pr.title,
        "created": opened.created,
    }  # fmt: skip


@DBOS.step(name="auto_pr_report")
async def _report(sink: ChunkSink, data: dict[str, Any]) -> None:
    await _emit(sink, data)


async def _emit(sink: ChunkSink, data: dict[str, Any]) -> None:
    await sink.emit_stored({"type": PART_TYPE, "id": PART_ID, "data": data})
