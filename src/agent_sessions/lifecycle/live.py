"""The session's sandbox for an API call: owned, brought to ``active``, connected.

A workspace call is activity: the idle deadline restarts, so the sandbox is not hibernated
under a user who is reading its diff. A hibernated sandbox is restored first (the call waits,
as a turn does), so every live route works whatever state the session is in. A session still
being provisioned is waited for up to :data:`PROVISIONING_WAIT_SECONDS` (a client that creates a
session and uploads a file at once should not have to poll), then a 409 to retry: a large clone
can take minutes, longer than a client should hold a request open.
"""

from __future__ import annotations

from agent_sessions.lifecycle.context import current
from agent_sessions.lifecycle.service import Lifecycle
from agent_sessions.sandbox import Sandbox
from agent_sessions.store import Database, sessions
from agent_sessions.store.lifecycle import LifecycleView

__all__ = ["PROVISIONING_WAIT_SECONDS", "live_sandbox", "owned"]

PROVISIONING_WAIT_SECONDS = 60.0


async def owned(db: Database, account_id: str, session_id: str) -> None:
    """403/404 unless ``account_id`` owns the session (before anything else is touched)."""
    await db.query_call(lambda s: sessions.read_owned(s, session_id, account_id))


async def live_sandbox(
    db: Database, lifecycle: Lifecycle, account_id: str, session_id: str
) -> tuple[Sandbox, LifecycleView]:
    """The owned session's running sandbox (restoring it if need be) and its lifecycle view."""
    await owned(db, account_id, session_id)
    view = await lifecycle.ensure_active(session_id, timeout=PROVISIONING_WAIT_SECONDS)
    await lifecycle.activity(session_id, None)
    assert view.sandbox_state is not None
    sandbox = await current().provider(view.sandbox_type).connect(view.sandbox_state)
    return sandbox, view
