"""The cached diff: refreshed after every turn that may have changed the workspace (it ran
``bash``, ``write``, ``edit`` or a subagent, a repository hook or an auto-commit: see
``agent/turn.py``) and before every hibernation, so that a user sees what the agent changed
without waking its sandbox (``GET …/diff/cached``).

:func:`refresh_cached_diff` is plain code; ``lifecycle/workflows.py: refresh_diff`` is the DBOS
step around it that the turn and the hibernation call, and hands it the database and providers.
Refreshing is idempotent (a re-run computes the workspace's diff again and stores it), so a
step cut off by a crash may simply run again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent_sessions.exceptions import Conflict
from agent_sessions.sandbox import Sandbox, SandboxProvider
from agent_sessions.store import Database
from agent_sessions.store import lifecycle as cas
from agent_sessions.store.diffs import save_cached_diff
from agent_sessions.store.models import utcnow
from agent_sessions.workspace.diff import compute_diff

__all__ = ["REFRESH_STATES", "computed_and_cached", "refresh_cached_diff"]

REFRESH_STATES = frozenset({"active", "hibernating"})
"""States in which the session's sandbox runs: ``hibernating`` is the refresh before the
snapshot. Any other state has no sandbox to ask, and a refresh never wakes one."""


async def computed_and_cached(
    db: Database, session_id: str, sandbox: Sandbox, max_bytes: int
) -> dict[str, Any]:
    """Compute the diff in ``sandbox`` and store it as the session's cached diff."""
    started = utcnow()
    diff = await compute_diff(sandbox, max_bytes)
    await db.write_call(lambda s: save_cached_diff(s, session_id, diff, started))
    return diff


async def refresh_cached_diff(
    db: Database, provider: Callable[[str], SandboxProvider], session_id: str, max_bytes: int
) -> str:
    """Refresh the session's cached diff if its sandbox is running (``provider`` gives the
    provider of a sandbox kind); says what happened: ``stored``, ``no-sandbox`` or
    ``not-a-repository``. Other errors propagate."""
    view = await db.read_call(lambda s: cas.view(s, session_id))
    if (
        view is None
        or view.lifecycle_state not in REFRESH_STATES
        or view.sandbox_state is None
        or cas.workspace_kept(view.sandbox_state)
    ):
        return "no-sandbox"
    sandbox = await provider(view.sandbox_type).connect(view.sandbox_state)
    try:
        await computed_and_cached(db, session_id, sandbox, max_bytes)
    except Conflict:
        return "not-a-repository"
    return "stored"
