"""The session's sandbox for an API call: owned, brought to ``active``, connected.

A workspace call is activity: the idle deadline restarts, so the sandbox is not hibernated
under a user who is reading its diff. A hibernated sandbox is restored first (the call waits,
as a turn does), so every live route works in every state but ``provisioning`` (409, try
again) and ``archived`` (409, unarchive first).
"""

from __future__ import annotations

from agent_sessions.exceptions import Conflict
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.lifecycle.context import current
from agent_sessions.lifecycle.service import STILL_PROVISIONING
from agent_sessions.sandbox import Sandbox
from agent_sessions.store import Database, sessions
from agent_sessions.store.lifecycle import LifecycleView

__all__ = ["live_sandbox", "owned"]


async def owned(db: Database, account_id: str, session_id: str) -> None:
    """403/404 unless ``account_id`` owns the session (before anything else is touched)."""
    await db.query_call(lambda s: sessions.read_owned(s, session_id, account_id))


async def live_sandbox(
    db: Database, lifecycle: Lifecycle, account_id: str, session_id: str
) -> tuple[Sandbox, LifecycleView]:
    """The owned session's running sandbox (restoring it if need be) and its lifecycle view.

    A session still provisioning is a 409 at once, as ``…/sandbox/resume`` answers: a request
    does not wait out a clone (``ensure_active`` would, for minutes)."""
    row = await db.query_call(lambda s: sessions.read_owned(s, session_id, account_id))
    if row.lifecycle_state == "provisioning":
        raise Conflict(STILL_PROVISIONING)
    view = await lifecycle.ensure_active(session_id)
    await lifecycle.activity(session_id, None)
    assert view.sandbox_state is not None
    sandbox = await current().provider(view.sandbox_type).connect(view.sandbox_state)
    return sandbox, view
