"""What the API asks of the lifecycle: start work after commits, and the sandbox routes.

Routes call these *after* their own transaction has committed; the work itself runs in the
durable workflows of :mod:`.workflows`, so an acknowledged request is never lost to a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from dbos import DBOS, SetWorkflowID
from sqlalchemy.orm import Session

from agent_sessions import logs
from agent_sessions.exceptions import Conflict, NotFound
from agent_sessions.hooks import HookRunner
from agent_sessions.lifecycle import runtime, workflows
from agent_sessions.lifecycle.context import LifecycleContext, current
from agent_sessions.lifecycle.hosts import HostMonitor, release_moved_sandboxes
from agent_sessions.settings import Settings
from agent_sessions.store import Database, quotas
from agent_sessions.store import lifecycle as cas
from agent_sessions.store.lifecycle import LifecycleView
from agent_sessions.store.models import utcnow

STILL_PROVISIONING = "Sandbox is still being provisioned, try again in a few seconds."
VERSION_MISMATCH = "Lifecycle version mismatch: expected {expected}, current {current}"
POLL_SECONDS = 0.05
log = logging.getLogger(__name__)


class Lifecycle:
    """The durable lifecycle of sessions' sandboxes (docs/architecture.md, Lifecycle)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        context: LifecycleContext | None = None,
        *,
        serves_http: bool = True,
    ) -> None:
        self.settings = settings
        self.db = db
        self._context = context
        self._on_start: list[Callable[[], None]] = []
        self.host = HostMonitor(settings, db, settings.advertise_url, serves_http)

    # --- process ----------------------------------------------------------------------------

    def on_start(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once DBOS is up (the agent turns reconcile their runs this way)."""
        self._on_start.append(callback)

    def on_takeover(self, callback: Callable[[str, list[str]], None]) -> None:
        """Run ``callback(executor_id, ended_run_ids)`` after this process took over a silent
        host."""
        self.host.on_takeover.append(callback)

    def start(self) -> None:
        """Register this process as a host (refusing a configuration that cannot work), then
        launch DBOS, which recovers this executor's pending workflows."""
        self.host.register()
        self.host.beat_from_now()
        try:
            runtime.start(self.settings, self.db, self._context)
        except BaseException:
            self.host.stop()
            raise
        self.reconcile()
        for callback in self._on_start:
            callback()
        self.host.start()
        if self.host.was_taken_over and self.settings.sandbox_provider == "local":
            provider = current().provider("local")
            runtime.off_loop(
                lambda: asyncio.run(
                    release_moved_sandboxes(self.db, provider, self.settings.executor_id)
                )
            )

    def reconcile(self) -> None:
        """Start the work that a crash between a commit and its workflow start left undone.

        A route commits first and starts the workflow after; a process killed in between leaves
        a session in ``provisioning`` with no run, or ``archived`` with its sandbox still held.
        The workflow ids are deterministic, so starting one that already exists (or ran) is a
        no-op, and several processes may reconcile at once.
        """
        with self.db.read() as s:
            pending = cas.unfinished(s)
        for session_id, state, version in pending:
            if state == "provisioning":
                with SetWorkflowID(f"provision-{session_id}"):
                    DBOS.start_workflow(workflows.provision, session_id)
            else:
                with SetWorkflowID(f"archive-{session_id}-{version}"):
                    DBOS.start_workflow(workflows.archive, session_id)

    def stop(self) -> None:
        self.host.stop()
        runtime.stop()

    # --- after-commit events --------------------------------------------------------------------
    # Each starts a durable workflow and returns at once: once DBOS has recorded the start, the
    # work survives a crash of this process.

    async def session_created(self, session_id: str) -> None:
        logs.bind(session=session_id)
        log.info("session created")
        with SetWorkflowID(f"provision-{session_id}"):
            await DBOS.start_workflow_async(workflows.provision, session_id)

    async def session_archived(self, session_id: str, version: int) -> None:
        with SetWorkflowID(f"archive-{session_id}-{version}"):
            await DBOS.start_workflow_async(workflows.archive, session_id)

    async def session_deleted(
        self, session_id: str, kind: str, state: dict[str, Any] | None, snapshot_url: str | None
    ) -> None:
        if state is None and snapshot_url is None and not self._hooks().has("SessionEnd"):
            return
        with SetWorkflowID(f"remove-{session_id}"):
            await DBOS.start_workflow_async(workflows.remove, session_id, kind, state, snapshot_url)

    def _hooks(self) -> HookRunner:
        return (self._context or current()).hooks

    # --- sandbox routes -------------------------------------------------------------------------

    async def _view(self, session_id: str) -> LifecycleView:
        return await self.db.read_call(lambda s: _current(s, session_id, None))

    async def status(self, session_id: str) -> LifecycleView:
        v = await self._view(session_id)
        now = utcnow()
        due = v.due_at
        if (
            v.lifecycle_state == "active"
            and due is not None
            and now > due + workflows.STALE_LEASE_GRACE
        ):
            # The watcher is overdue by more than the grace: its process is gone. Take over.
            with SetWorkflowID(f"watch-{session_id}-{v.lifecycle_version}-{int(now.timestamp())}"):
                await DBOS.start_workflow_async(workflows.watch, session_id)
        return v

    async def activity(self, session_id: str, expected_version: int | None) -> LifecycleView:
        def touch(s: Session) -> LifecycleView:
            v = _current(s, session_id, expected_version)
            if v.lifecycle_state != "active":
                raise Conflict(f"Sandbox is not active (state: {v.lifecycle_state})")
            done = cas.touch(s, session_id, self.settings.idle_timeout_seconds)
            assert done is not None
            return done

        return await self.db.write_call(touch)

    async def extend(self, session_id: str, expected_version: int | None) -> LifecycleView:
        def extend(s: Session) -> LifecycleView:
            v = _current(s, session_id, expected_version)
            if v.lifecycle_state != "active" or v.sandbox_expires_at is None:
                raise Conflict(f"Sandbox is not active (state: {v.lifecycle_state})")
            done = cas.transition(
                s,
                session_id,
                from_states={"active"},
                to_state="active",
                expected_version=v.lifecycle_version,
                sandbox_expires_at=v.sandbox_expires_at
                + timedelta(seconds=self.settings.extend_seconds),
            )
            assert done is not None
            return done

        return await self.db.write_call(extend)

    async def hibernate(self, session_id: str, expected_version: int | None) -> LifecycleView:
        def begin(s: Session) -> LifecycleView | None:
            v = _current(s, session_id, expected_version)
            if v.lifecycle_state in ("hibernated", "hibernating"):
                return None
            if v.lifecycle_state != "active":
                raise Conflict(f"Sandbox cannot hibernate from state {v.lifecycle_state}")
            if cas.has_live_turn(s, session_id):
                raise Conflict("A turn is running in this session; stop it first")
            return cas.transition(
                s, session_id, from_states={"active"}, to_state="hibernating",
                expected_version=v.lifecycle_version, lifecycle_run_id=None,
            )  # fmt: skip

        started = await self.db.write_call(begin)
        if started is not None:
            with SetWorkflowID(f"hibernate-{session_id}-{started.lifecycle_version}"):
                handle = await DBOS.start_workflow_async(
                    workflows.hibernate, session_id, started.lifecycle_version
                )
            await handle.get_result()
        # The hibernation in flight (ours, or one found running) is over once the session has
        # left ``hibernating``; answer whatever state it is in then. Waiting for ``hibernated``
        # itself could wait for good: a resume may have restored the sandbox before this looks.
        return await self._wait_while(session_id, "hibernating", 600)

    async def resume(self, session_id: str, expected_version: int | None) -> LifecycleView:
        v = await self.db.read_call(lambda s: _current(s, session_id, expected_version))
        if v.lifecycle_state == "provisioning":
            raise Conflict(STILL_PROVISIONING)
        return await self.ensure_active(session_id)

    async def ensure_active(self, session_id: str, timeout: float = 600.0) -> LifecycleView:  # noqa: ASYNC109
        """Bring the sandbox to ``active``, restoring it if hibernated; the agent-turn code calls
        this before a turn. Waits out transitions in flight (hibernating, restoring)."""
        deadline = time.monotonic() + timeout
        while True:
            v = await self._view(session_id)
            state = v.lifecycle_state
            if state == "active":
                return v
            if state in ("archived", None):
                raise Conflict("Session is archived; unarchive it first")
            if (
                state == "failed"
                and v.snapshot_url is None
                and not cas.workspace_kept(v.sandbox_state)
            ):
                raise Conflict(f"Sandbox failed: {v.lifecycle_error or 'unknown error'}")
            if state in ("hibernated", "failed"):
                limit = self.settings.account_max_live_sandboxes
                started = await self.db.write_call(partial(_begin_restore, v, limit))
                if started is not None:
                    await self._run_restore(session_id, started.lifecycle_version)
                    continue
            if state == "restoring":
                await self._run_restore(session_id, v.lifecycle_version)
                continue
            if time.monotonic() > deadline:
                raise Conflict(
                    STILL_PROVISIONING
                    if state == "provisioning"
                    else f"Sandbox is still {state}, try again in a few seconds."
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _run_restore(self, session_id: str, version: int) -> None:
        """Start (or join) the restore run for this version and wait for it."""
        with SetWorkflowID(f"restore-{session_id}-{version}"):
            handle = await DBOS.start_workflow_async(workflows.restore, session_id, version)
        await handle.get_result()
        after = await self._view(session_id)
        if after.lifecycle_state == "failed":
            raise Conflict(after.lifecycle_error or "Restore failed")

    async def _wait_while(
        self,
        session_id: str,
        state: str,
        timeout: float,  # noqa: ASYNC109
    ) -> LifecycleView:
        deadline = time.monotonic() + timeout
        while True:
            v = await self._view(session_id)
            if v.lifecycle_state != state or time.monotonic() > deadline:
                return v
            await asyncio.sleep(POLL_SECONDS)


def _current(s: Session, session_id: str, expected_version: int | None) -> LifecycleView:
    """The session's lifecycle now; 404 if gone, 409 if not at ``expected_version``."""
    v = cas.view(s, session_id)
    if v is None:
        raise NotFound("Session not found")
    if expected_version is not None and v.lifecycle_version != expected_version:
        raise Conflict(
            VERSION_MISMATCH.format(expected=expected_version, current=v.lifecycle_version)
        )
    return v


def _begin_restore(v: LifecycleView, sandbox_limit: int, s: Session) -> LifecycleView | None:
    """``→ restoring``, if the account has room for one more live sandbox (429 if not)."""
    account_id = quotas.session_account(s, v.id)
    if account_id is None:
        raise NotFound("Session not found")
    quotas.lock_account(s, account_id)
    quotas.require_sandbox_room(s, account_id, sandbox_limit)
    return cas.transition(
        s, v.id, from_states={v.lifecycle_state}, to_state="restoring",
        expected_version=v.lifecycle_version, lifecycle_error=None,
    )  # fmt: skip
