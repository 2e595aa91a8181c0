"""Many processes on one database: heartbeats, start-up guard rails, and taking over a host
that went silent (docs/architecture.md, Scale-out).

Every ``serve`` and ``worker`` process is a *host*, named by its DBOS executor id. It records
itself in the ``hosts`` table before DBOS launches (DBOS then recovers that executor's pending
workflows, so a second live process with the same id would run them twice: it is refused) and
beats every :attr:`Settings.host_heartbeat_seconds`. A host silent for
:attr:`Settings.host_dead_after_seconds` is taken over by one live host (a compare-and-set on
its row decides which):

- with local sandboxes, its sandboxes went with it. Each of its sessions comes back from its
  last snapshot (``hibernated``; the next turn or resume restores it on a live host, and the
  session says from which snapshot) or fails visibly when it has none; its turns end
  ``failed`` with what they streamed kept (a turn is not continued on another host: its tool
  calls ran against a workspace that is gone); its pending workflows are cancelled, so that
  none resumes should it come back.
- with remote (Vercel) sandboxes, nothing was bound to it: its pending workflows are resumed
  (DBOS's internal queue hands them to a live host), going on from their last completed step.

A host that finds itself taken over (it was silent, not dead) stops: the sessions it held were
moved, and going on would act on them twice.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dbos import DBOS
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.settings import Settings
from agent_sessions.store import Database, turns
from agent_sessions.store import hosts as store
from agent_sessions.store import lifecycle as cas
from agent_sessions.store.models import ChatRun, Host, SessionRow, utcnow

log = logging.getLogger(__name__)

HOST_KEY = "host"
"""The key of a local sandbox's state that names its host."""
SESSION_WORKFLOWS = frozenset({"provision", "restore", "hibernate", "watch", "archive"})
"""The lifecycle workflows whose first argument is a session id."""
TURN_LOST = (
    "The server running this turn ({host}) stopped responding; what it streamed is kept. "
    "Send the message again to continue."
)


class StartupRefused(AgentSessionsError):
    """A configuration that cannot work, refused before anything runs (one line)."""


@dataclass
class HostMonitor:
    """This process as a host: registered at start, beating, watching the others."""

    settings: Settings
    db: Database
    url: str | None = None
    serves_http: bool = True
    """False for a ``worker``: no request can reach a sandbox of its."""

    def __post_init__(self) -> None:
        self.on_takeover: list[Callable[[str, list[str]], None]] = []
        """Called with a host this process took over and the turns that ended with it, after
        its workflows were handled (the agent turns store what those streamed, and adopt the
        turns it accepted and never started)."""
        self.executor_id = self.settings.executor_id
        self.instance = secrets.token_hex(8)
        self.was_taken_over = False
        """This start follows a takeover of this host: its sessions moved elsewhere."""
        self._stop = threading.Event()
        self._watching = threading.Event()
        self._thread: threading.Thread | None = None

    # --- start and stop ------------------------------------------------------------------------

    def check(self) -> str | None:
        """What :meth:`register` would refuse, recording nothing (``serve`` asks before it
        starts its server, to say it in one line)."""
        with self.db.read() as s:
            return self._verdict(s, utcnow(), lock=False)

    def register(self) -> None:
        """Record this process as live, or refuse to start (:class:`StartupRefused`)."""
        now = utcnow()
        with self.db.write() as s:
            refusal = self._verdict(s, now, lock=True)
            if refusal is not None:
                s.rollback()
                raise StartupRefused(refusal)
            row = s.get(Host, self.executor_id)
            self.was_taken_over = row is not None and row.state == "gone"
            store.record(s, store.HostView(
                self.executor_id, self.instance, socket.gethostname(), os.getpid(), self.url,
                self.settings.sandbox_provider, "live", now,
            ))  # fmt: skip

    def _verdict(self, s: Session, now: datetime, *, lock: bool) -> str | None:
        alive_after = now - timedelta(seconds=self.settings.host_dead_after_seconds)
        holder = store.holder(s, self.executor_id, lock=lock)
        if (
            holder is not None
            and holder.instance != self.instance
            and holder.heartbeat_at > alive_after
            and _process_may_live(holder)
        ):
            return _in_use(holder, now)
        others = [
            h for h in store.others_live(s, self.executor_id, alive_after=alive_after)
            if _process_may_live(h)
        ]  # fmt: skip
        refusal = self._refusal(others)
        settings = self.settings
        shared_local = settings.sandbox_provider == settings.snapshot_store == "local"
        if refusal is None and others and shared_local and lock:  # once, at the register
            log.warning(
                "local sandboxes and local snapshots on several hosts: a session whose "
                "host dies cannot come back on another one (set "
                "AGENT_SESSIONS_SNAPSHOT_STORE=s3)"
            )
        return refusal

    def _refusal(self, others: list[store.HostView]) -> str | None:
        settings = self.settings
        if not self.serves_http and settings.sandbox_provider == "local" and not settings.is_sqlite:
            return (
                "a worker serves no HTTP, so no request could reach a local sandbox it made: "
                "run `serve` instead, or use AGENT_SESSIONS_SANDBOX_PROVIDER=vercel"
            )
        if not others:
            return None
        first = others[0]
        where = f"'{first.executor_id}' (pid {first.pid} on {first.hostname})"
        if self.settings.is_sqlite:
            return (
                f"another process, {where}, already serves this SQLite database: SQLite serves "
                "one process; use PostgreSQL (AGENT_SESSIONS_DATABASE_URL) for more"
            )
        if self.settings.sandbox_provider == "local" and self.settings.agent_global_concurrency:
            return (
                f"AGENT_SESSIONS_AGENT_GLOBAL_CONCURRENCY hands turns to any process, but local "
                f"sandboxes live on one host and {where} is another: unset it (each host then "
                "runs its own sessions' turns) or use AGENT_SESSIONS_SANDBOX_PROVIDER=vercel"
            )
        return None

    def beat_from_now(self) -> None:
        """Beat from now on, in a thread, from the moment this process is registered: a start
        that takes longer than the timeout (DBOS recovering many workflows, a loaded machine)
        must not look like a silence to the others."""
        self._thread = threading.Thread(target=self._run, name="hosts", daemon=True)
        self._thread.start()

    def start(self) -> None:
        """Watch the others too, now that DBOS is launched (taking over needs it; its
        synchronous calls refuse an event loop's thread, hence the thread)."""
        self._watching.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            with self.db.write() as s:
                store.stopped(s, self.executor_id, self.instance)
        except Exception:
            log.warning("could not record this host as stopped", exc_info=True)

    # --- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.settings.host_heartbeat_seconds):
            try:
                if not self._beat():
                    return
                if self._watching.is_set():
                    self.watch()
            except Exception:
                log.exception("host heartbeat or watch failed; trying again")

    def _beat(self) -> bool:
        with self.db.write() as s:
            alive = store.beat(s, self.executor_id, self.instance, utcnow())
        if not alive:
            log.error(
                "this process (executor %s) was taken over after a silence, or its id is used "
                "by another process: stopping, so that nothing is done twice",
                self.executor_id,
            )
            os.kill(os.getpid(), signal.SIGTERM)
        return alive

    def watch(self) -> list[str]:
        """Take over the hosts silent past the timeout; returns those this process took."""
        now = utcnow()
        alive_after = now - timedelta(seconds=self.settings.host_dead_after_seconds)
        with self.db.read() as s:
            silent = store.silent(s, alive_after=alive_after)
        taken = []
        for dead in silent:
            with self.db.write() as s:
                row = s.get(Host, dead)
                provider = row.sandbox_provider if row is not None else "local"
                won = store.take_over(
                    s, dead, by=self.executor_id, alive_after=alive_after, now=now
                )
            if won:
                log.warning("host %s went silent; taking over its work", dead)
                self._take_over(dead, provider)
                taken.append(dead)
        return taken

    def _take_over(self, dead: str, provider: str) -> None:
        """Handle a lost host's sessions, turns and workflows. The turns it ran are ended after
        the callbacks stored what they streamed: a client that sees a turn ended finds its
        message complete."""
        pending = DBOS.list_workflows(executor_id=dead, status="PENDING", load_output=False)
        if provider != "local":  # nothing was bound to the host: its work goes on elsewhere
            for wf in pending:  # from its last completed step, on whichever host dequeues it
                DBOS.cancel_workflow(wf.workflow_id)
                DBOS.resume_workflow(wf.workflow_id)
            for callback in self.on_takeover:
                callback(dead, [])
            return
        for wf in pending:
            DBOS.cancel_workflow(wf.workflow_id)
        sessions = {
            str(wf.input["args"][0])
            for wf in pending
            if wf.name in SESSION_WORKFLOWS and wf.input is not None and wf.input["args"]
        }
        runs = {wf.workflow_id for wf in pending if wf.name == "agent_turn"}
        with self.db.write() as s:
            moved = _move_sessions(s, dead, sessions)
            ending = _live_runs(s, dead, runs, moved)
        for callback in self.on_takeover:
            callback(dead, ending)
        with self.db.write() as s:
            _end_runs(s, dead, ending)
        log.warning(
            "took over host %s: %d session(s) back to their snapshot or failed, %d turn(s) "
            "ended, %d workflow(s) cancelled", dead, len(moved), len(ending), len(pending),
        )  # fmt: skip


def _process_may_live(host: store.HostView) -> bool:
    """False only for a process known dead: one on this machine whose pid is gone (a restart
    after a crash need not wait for the heartbeat to go stale), or this very process."""
    if host.hostname != socket.gethostname():
        return True
    if host.pid == os.getpid():
        return False
    try:
        os.kill(host.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_use(holder: store.HostView, now: datetime) -> str:
    ago = max(0, int((now - holder.heartbeat_at).total_seconds()))
    return (
        f"executor id '{holder.executor_id}' is in use by a live process (pid {holder.pid} on "
        f"{holder.hostname}, last heartbeat {ago} s ago): give each process sharing a database "
        "its own AGENT_SESSIONS_EXECUTOR_ID"
    )


def _move_sessions(s: Session, dead: str, named: set[str]) -> set[str]:
    """Every session whose sandbox was on ``dead`` (or whose lifecycle work ran there) goes back
    to its last snapshot, or fails; returns their ids."""
    on_host = SessionRow.sandbox_state[HOST_KEY].as_string() == dead
    rows = s.execute(
        select(SessionRow.id).where(
            (on_host | SessionRow.id.in_(named)) & (SessionRow.lifecycle_state != "archived")
        )
    )
    moved = set()
    for (session_id,) in rows:
        v = cas.view(s, session_id)
        if v is None or v.lifecycle_state in (None, "archived"):
            continue
        host = (v.sandbox_state or {}).get(HOST_KEY)
        if host not in (None, dead):  # restored elsewhere meanwhile
            continue
        values: dict[str, Any] = {"sandbox_state": None, "lifecycle_run_id": None}
        if v.snapshot_url is not None:
            taken = _snapshot_time(s, session_id)
            to_state = "hibernated"
            values["lifecycle_error"] = (
                f"Its sandbox host ({dead}) stopped responding; the session comes back from its "
                f"snapshot of {taken} (later changes to the workspace are lost)."
            )
        else:
            to_state = "failed"
            values["lifecycle_error"] = (
                f"Its sandbox host ({dead}) stopped responding, and the session had no "
                "snapshot to come back from."
            )
        done = cas.transition(
            s, session_id, from_states={v.lifecycle_state}, to_state=to_state,
            expected_version=v.lifecycle_version, **values,
        )  # fmt: skip
        if done is not None:
            moved.add(session_id)
    return moved


def _snapshot_time(s: Session, session_id: str) -> str:
    at = s.scalar(select(SessionRow.snapshot_created_at).where(SessionRow.id == session_id))
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "an unknown time"


def _live_runs(s: Session, dead: str, runs: set[str], sessions: set[str]) -> list[str]:
    """The live turns that ran (or waited) on ``dead``: with local sandboxes a turn runs in the
    process that accepted it."""
    rows = s.execute(
        select(ChatRun.id).where(
            ChatRun.status.in_(turns.LIVE)
            & (
                ChatRun.id.in_(runs)
                | ChatRun.session_id.in_(sessions)
                | (ChatRun.executor_id == dead)  # accepted there: running, or waiting a slot
            )
        )
    )
    return [run_id for (run_id,) in rows]


def _end_runs(s: Session, dead: str, run_ids: list[str]) -> None:
    """End them ``failed``, releasing their chats (what they streamed is kept)."""
    for run_id in run_ids:
        run = turns.get_run(s, run_id)
        if run is None:
            continue
        turns.finish_run(
            s, run_id, status="failed", error=TURN_LOST.format(host=dead), finish_reason="error"
        )
        turns.release_chat(s, run.chat_key, run_id, replied=False)


async def release_moved_sandboxes(db: Database, provider: Any, executor_id: str) -> list[str]:
    """After this host was taken over and came back: its local sandboxes whose sessions moved
    elsewhere (no session's state names them here any more) are destroyed, so the disk they
    held comes back. Returns their names."""

    def kept(s: Session) -> set[str]:
        on_host = SessionRow.sandbox_state[HOST_KEY].as_string() == executor_id
        states = s.scalars(select(SessionRow.sandbox_state).where(on_host))
        return {str(st.get("name")) for st in states if isinstance(st, dict)}

    names = await db.read_call(kept)
    released = []
    for home in sorted(provider.root.iterdir()):
        if home.name.startswith(".") or not home.is_dir() or home.name in names:
            continue
        try:
            box = await provider.connect({"provider": "local", "name": home.name})
            await box.destroy()
        except Exception:
            log.warning("could not release sandbox %s", home.name, exc_info=True)
            continue
        released.append(home.name)
    if released:
        log.warning("released %d sandbox(es) of sessions moved off this host", len(released))
    return released
