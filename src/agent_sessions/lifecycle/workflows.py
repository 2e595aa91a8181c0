"""The durable lifecycle workflows: provision, watch, hibernate, restore, archive, delete.

Every side effect is a DBOS step, so a process killed anywhere resumes after its last completed
step; steps are written to be safe to run twice (a step cut off mid-flight runs again). Every
state change is a compare-and-set in ``store.lifecycle``: when a workflow loses a race (the
session was archived, deleted or resumed meanwhile) it cleans up what it made and stops.

Workflow ids carry the session id and the lifecycle version they act on, so starting the same
work twice (two resume calls, a retry after a crash) joins the one run instead of racing it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, Literal, ParamSpec, TypeVar

from dbos import DBOS, SetWorkflowID
from sqlalchemy.orm import Session

from agent_sessions import logs, metrics
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.faults import fault_point
from agent_sessions.hooks import HookOutcome
from agent_sessions.hooks.repo import RepoHooks, read_settings
from agent_sessions.lifecycle.context import current
from agent_sessions.sandbox import SandboxError, SandboxNotFound, SandboxUnavailable
from agent_sessions.store import lifecycle as cas
from agent_sessions.store.lifecycle import LifecycleView
from agent_sessions.store.models import utcnow
from agent_sessions.workspace import remote, skill_install
from agent_sessions.workspace.cached_diff import refresh_cached_diff

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

STALE_LEASE_GRACE = timedelta(minutes=2)
MIN_SLEEP_SECONDS = 0.2
LIVE_TURN_RECHECK_SECONDS = 30.0
TRANSIENT_ATTEMPTS = 4
KEPT_NOTE = (
    "; its processes were stopped and its workspace is kept on the sandbox host: resume "
    "continues from it, and the next hibernation tries the snapshot again"
)
KEPT_GONE = "Restore failed: the workspace kept after a failed snapshot is gone"


async def _db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call in a write transaction, off the event loop."""
    return await current().db.write_call(lambda session: fn(session, *args, **kwargs))


async def _with_retries(what: str, fn: Callable[[], Any]) -> Any:
    """Retry transient provider failures with backoff; permanent ones raise at once."""
    delay = 0.5
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            return await fn()
        except SandboxUnavailable as err:
            if attempt == TRANSIENT_ATTEMPTS:
                raise
            log.warning("%s failed (attempt %d): %s; retrying", what, attempt, err)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _readable(err: BaseException) -> str:
    """An error for ``lifecycleError``: the message only (never a traceback or env), and no
    host path: an ``OSError`` names only the last part of its file, and the data
    directory is left out of any other message."""
    if isinstance(err, OSError) and err.strerror:
        name = os.path.basename(os.fsdecode(err.filename)) if err.filename else ""
        message = f"{err.strerror}: {name}" if name else err.strerror
    else:
        message = getattr(err, "message", None) or str(err) or type(err).__name__
    data_dir = str(current().settings.data_dir.resolve())
    return message.replace(data_dir, "<data dir>")[:500]


def _timers() -> dict[str, Any]:
    s = current().settings
    now = utcnow()
    return {
        "last_activity_at": now,
        "hibernate_after": now + timedelta(seconds=s.idle_timeout_seconds),
        "sandbox_expires_at": now + timedelta(seconds=s.hard_timeout_seconds),
        "lifecycle_error": None,
    }


# --- steps ------------------------------------------------------------------------------------


@DBOS.step()
async def load(session_id: str) -> LifecycleView | None:
    return await _db(cas.view, session_id)


@DBOS.step()
async def create_sandbox(session_id: str, kind: str) -> dict[str, Any]:
    provider = current().provider(kind)

    async def make() -> dict[str, Any]:
        return (await provider.create(session_id)).state

    result: dict[str, Any] = await _with_retries(f"create sandbox {session_id}", make)
    fault_point("provision.sandbox-created")
    return result


@DBOS.step()
async def bind_repo(session_id: str, kind: str, state: dict[str, Any]) -> None:
    """The workspace becomes the session's repository, cloned on the host (the sandbox has no
    network and never sees the token), or a fresh one. A re-run after a crash starts clean.
    Reads the binding and the token itself: neither passes through DBOS's records."""
    ctx = current()
    sandbox = await ctx.provider(kind).connect(state)
    await remote.provision(ctx.settings, ctx.db, ctx.vault, session_id, sandbox)


@DBOS.step()
async def forget_repo(session_id: str) -> None:
    await remote.forget(current().settings, session_id)


@DBOS.step()
async def run_hooks(event: str, session_id: str, extra: dict[str, Any]) -> list[str]:
    """Run operator hooks for a lifecycle event; returns block reasons (empty = proceed)."""
    hooks = current().hooks
    if not hooks.has(event):
        return []
    outcome = await hooks.run(event, {"session_id": session_id, **extra}, subject=event)
    for problem in outcome.problems:
        log.warning("hook problem on %s for %s: %s", event, session_id, problem)
    return outcome.reasons if outcome.blocked else []


@DBOS.step()
async def session_hooks(
    event: Literal["SessionStart", "SessionEnd"],
    session_id: str,
    kind: str,
    state: dict[str, Any] | None,
    why: str,
) -> list[str]:
    """Claude Code's ``SessionStart`` (``source``: ``startup`` after provisioning, ``resume``
    after a restore) and ``SessionEnd`` (``reason``: ``archived`` or ``deleted``): the
    operator's hooks on the host, then, when allowed and the sandbox is there, the
    repository's in the sandbox. Neither event can block and neither fails the workflow: a
    problem is logged and returned (the step's record)."""
    ctx = current()
    key = "source" if event == "SessionStart" else "reason"
    body = {"session_id": session_id, "cwd": "/workspace", key: why}
    outcome = HookOutcome()
    try:
        if ctx.hooks.has(event):
            outcome.merge(await ctx.hooks.run(event, body, subject=why))
        if ctx.settings.allow_repo_hooks and state is not None:
            sandbox = await ctx.provider(kind).connect(state)
            config, warnings = await read_settings(sandbox)
            outcome.problems += warnings
            repo = RepoHooks(config)
            if repo.has(event):
                outcome.merge(await repo.run(sandbox, event, body, subject=why))
    except AgentSessionsError as err:
        outcome.problems.append(f"{event} hooks could not run: {err.message}")
    except OSError as err:  # the operator's command could not start
        outcome.problems.append(f"{event} hooks could not run: {_readable(err)}")
    for problem in outcome.problems:
        log.warning("hook problem on %s for %s: %s", event, session_id, problem)
    return outcome.problems


@DBOS.step()
async def activate(
    session_id: str, state: dict[str, Any], from_state: str, version: int
) -> LifecycleView | None:
    """Make the session active with the lease already naming the watcher started next, in one
    transaction: no reader ever sees an active session without its watcher's lease. Only from
    ``version``: a stale restore must not install its sandbox in a later one's place."""
    timers = _timers()

    def go(s: Session) -> LifecycleView | None:
        v = cas.transition(
            s, session_id, from_states={from_state}, expected_version=version, to_state="active",
            sandbox_state=state, **timers,
        )  # fmt: skip
        if v is None:
            return None
        watcher = watcher_id(session_id, v.lifecycle_version)
        return cas.set_fields(s, session_id, in_states={"active"}, lifecycle_run_id=watcher)

    return await current().db.write_call(go)


@DBOS.step()
async def fail(
    session_id: str,
    from_state: str,
    version: int,
    message: str,
    *,
    forget_sandbox: bool = False,
) -> None:
    """``→ failed``, only from ``version`` (a stale workflow must not fail the session a later
    one is working on). Every caller has stopped the sandbox's processes first: a failed
    session has no watcher, so nothing of it may run on. ``forget_sandbox`` drops a kept
    workspace that turned out to be gone, so that a later resume can fall back on an older
    snapshot."""
    extra: dict[str, Any] = {"sandbox_state": None} if forget_sandbox else {}
    await _db(
        cas.transition,
        session_id,
        from_states={from_state},
        expected_version=version,
        to_state="failed",
        lifecycle_error=message,
        lifecycle_run_id=None,
        hibernate_after=None,
        **extra,
    )


@DBOS.step()
async def snapshot_and_destroy(kind: str, state: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the workspace, then remove the sandbox. The snapshot exists before anything is
    deleted; a re-run after a crash makes a fresh snapshot (the old one is then unreferenced).

    The sandbox is frozen first, always: every caller removes it right after anyway, and a
    frozen tree is consistent (a process rewriting files can neither fail the archive nor tear
    it). If the snapshot fails all the same, every process is killed and it is tried once more:
    now nothing can change the tree (this also covers a provider that cannot freeze). If that
    fails too, nothing runs any more and the workspace stays: the result is then
    ``{"kept": <error>}``, for the caller to record with :func:`record_kept`.
    """
    sandbox = await current().provider(kind).connect(state)
    try:
        await sandbox.freeze()
        info = await _with_retries("snapshot", sandbox.snapshot)
    except Exception as err:
        log.warning("snapshot of %s failed frozen, stopping it: %s", sandbox.name, _readable(err))
        await sandbox.stop()
        try:
            info = await _with_retries("snapshot", sandbox.snapshot)
        except Exception as again:
            fault_point("hibernate.kept")
            return {"kept": _readable(again)}
    fault_point("hibernate.snapshotted")
    await sandbox.destroy()
    return {
        "snapshot_url": info.url,
        "snapshot_size_bytes": info.size_bytes,
        "snapshot_created_at": info.created_at,
    }


@DBOS.step()
async def refresh_diff(session_id: str) -> str:
    """Refresh the session's cached diff (``workspace/cached_diff.py``), after a turn and
    before a hibernation. Never raises: a failed refresh fails neither, and the cache keeps
    the last good diff. Returns what happened, a short string (the diff itself is not
    recorded as the step's output)."""
    ctx = current()
    try:
        return await refresh_cached_diff(
            ctx.db, ctx.provider, session_id, ctx.settings.diff_max_bytes
        )
    except Exception as err:
        log.warning("cached diff of %s not refreshed: %s", session_id, _readable(err))
        return f"failed: {_readable(err)}"


@DBOS.step()
async def install_skills(session_id: str, kind: str, state: dict[str, Any]) -> list[str]:
    """Install the session's global skills (``workspace/skill_install.py``) at provisioning and
    after every restore; returns the problems for the record. Never raises: a broken skill
    must not fail the sandbox."""
    ctx = current()
    try:
        refs = await ctx.db.read_call(lambda s: skill_install.stored_refs(s, session_id))
        sandbox = await ctx.provider(kind).connect(state)
        problems = await skill_install.install(sandbox, ctx.settings, refs)
    except Exception as err:
        log.warning("installing skills of session %s failed: %s", session_id, err)
        return [f"installing skills failed: {err}"]
    for p in problems:
        log.warning("session %s: skill %s: %s", session_id, p.path, p.error)
    return [f"{p.path}: {p.error}" for p in problems]


@DBOS.step()
async def stop_sandbox(kind: str, state: dict[str, Any]) -> str:
    """Stop every process of a sandbox before its session fails, keeping the workspace.
    Returns what the error message must add: nothing, or that even this failed."""
    try:
        await (await current().provider(kind).connect(state)).stop()
    except SandboxNotFound:
        pass
    except Exception as err:
        return f"; stopping its processes failed too: {_readable(err)}"
    return ""


@DBOS.step()
async def destroy_sandbox(kind: str, state: dict[str, Any] | None) -> None:
    if state is None:
        return
    try:
        sandbox = await current().provider(kind).connect(state)
    except SandboxNotFound:
        return
    await sandbox.destroy()


@DBOS.step()
async def delete_snapshot(kind: str, url: str | None) -> None:
    if url is None:
        return
    from agent_sessions.snapshots import store_from_settings

    if url.startswith(("local://", "s3://")):
        await store_from_settings(current().settings).delete(url)
    else:
        deleter = getattr(current().provider(kind), "delete_snapshot", None)
        if deleter is not None:
            await deleter(url)


@DBOS.step()
async def record_hibernated(session_id: str, version: int, snap: dict[str, Any]) -> str:
    """Finish a hibernation: ``hibernated`` if still ours, snapshot kept on an archived session,
    or ``gone`` when the session was deleted meanwhile (the caller then drops the snapshot)."""

    def finish(db: Any) -> str:
        done = cas.transition(
            db,
            session_id,
            from_states={"hibernating"},
            to_state="hibernated",
            expected_version=version,
            sandbox_state=None,
            lifecycle_run_id=None,
            hibernate_after=None,
            sandbox_expires_at=None,
            **snap,
        )
        if done is not None:
            return "hibernated"
        kept = cas.set_fields(db, session_id, in_states={"archived"}, sandbox_state=None, **snap)
        return "archived" if kept is not None else "gone"

    return await _db(finish)


@DBOS.step()
async def record_kept(session_id: str, version: int, state: dict[str, Any], error: str) -> str:
    """Finish a hibernation whose snapshot could not be made (``snapshot_and_destroy`` kept the
    workspace, its processes stopped): ``hibernated`` with the kept workspace as its state if
    still ours, the workspace kept on an archived session, or ``gone`` (the caller then removes
    the sandbox). ``version`` -1: not a hibernation (archive, or a provision that lost)."""
    kept = cas.keep_workspace(state)

    def finish(db: Any) -> str:
        done = cas.transition(
            db,
            session_id,
            from_states={"hibernating"},
            to_state="hibernated",
            expected_version=version,
            sandbox_state=kept,
            lifecycle_error=f"Snapshot failed: {error}{KEPT_NOTE}",
            lifecycle_run_id=None,
            hibernate_after=None,
            sandbox_expires_at=None,
        )
        if done is not None:
            return "hibernated"
        archived = cas.set_fields(
            db,
            session_id,
            in_states={"archived"},
            sandbox_state=kept,
            lifecycle_error=f"Archive finalization failed: {error}{KEPT_NOTE}",
        )
        return "archived" if archived is not None else "gone"

    return await _db(finish)


async def _keep(session_id: str, version: int, kind: str, state: dict[str, Any], error: str) -> str:
    outcome = await record_kept(session_id, version, state, error)
    if outcome == "gone":
        await destroy_sandbox(kind, state)
    return outcome


@DBOS.step()
async def restore_sandbox(name: str, kind: str, snapshot_url: str) -> dict[str, Any]:
    provider = current().provider(kind)

    async def make() -> dict[str, Any]:
        sandbox = await provider.create(name)
        try:
            await sandbox.restore(snapshot_url)
        except BaseException:
            try:  # the session fails next: nothing of it may run on
                await sandbox.stop()
            except Exception as err:
                log.warning("cannot stop %s after a failed restore: %s", sandbox.name, err)
            raise
        fault_point("restore.restored")
        return sandbox.state

    result: dict[str, Any] = await _with_retries(f"restore {name}", make)
    return result


@DBOS.step()
async def reuse_kept(kind: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """The workspace a failed snapshot kept becomes the live sandbox again, as it is (its
    processes were stopped; stopping again makes sure). ``None`` if it is gone."""
    try:
        sandbox = await current().provider(kind).connect(state)
    except SandboxNotFound:
        return None
    await sandbox.stop()
    return sandbox.state


@DBOS.step()
async def claim(session_id: str, run_id: str) -> bool:
    stale_before = utcnow() - STALE_LEASE_GRACE
    return await _db(cas.claim_lease, session_id, run_id, stale_before=stale_before)


@DBOS.step()
async def plan(session_id: str, run_id: str) -> tuple[Literal["exit", "sleep", "hibernate"], float]:
    """The watcher's decision, taken atomically with the hibernation CAS so that activity
    arriving a moment earlier always wins: the row stays locked from the read of the deadline
    to the CAS (activity moves the deadline without a new version, so the CAS alone would not
    see it on PostgreSQL; a turn being accepted holds the same lock)."""

    def decide(db: Any) -> tuple[Literal["exit", "sleep", "hibernate"], float]:
        v = cas.view(db, session_id, for_update=True)
        if v is None or v.lifecycle_run_id != run_id:
            return "exit", 0.0
        if v.lifecycle_state == "hibernating":  # our own CAS committed before a crash
            return "hibernate", float(v.lifecycle_version)
        if v.lifecycle_state != "active":
            cas.release_lease(db, session_id, run_id)
            return "exit", 0.0
        due = v.due_at
        now = utcnow()
        if due is None:
            return "sleep", LIVE_TURN_RECHECK_SECONDS
        if due > now:
            return "sleep", max((due - now).total_seconds(), MIN_SLEEP_SECONDS)
        if cas.has_live_turn(db, session_id):
            return "sleep", min(LIVE_TURN_RECHECK_SECONDS, current().settings.idle_timeout_seconds)
        done = cas.transition(
            db,
            session_id,
            from_states={"active"},
            to_state="hibernating",
            expected_version=v.lifecycle_version,
            lease=run_id,
        )
        if done is None:
            return "sleep", MIN_SLEEP_SECONDS
        return "hibernate", float(done.lifecycle_version)

    return await _db(decide)


# --- workflows --------------------------------------------------------------------------------


LOGGED = {
    ("provision", "active"): "session provisioned",
    ("hibernate", "hibernated"): "session hibernated",
    ("restore", "active"): "session restored",
    ("archive", "hibernated"): "session archived",
}
"""The INFO line of an operation that reached its goal; a failed one is a WARNING."""


def observed(
    operation: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, str]]], Callable[P, Coroutine[Any, Any, str]]]:
    """Count and time a lifecycle workflow (by the outcome it returns) and log its end.

    Applied under ``@DBOS.workflow()``, so DBOS registers the wrapper under the workflow's own
    name; an execution resumed after a restart is observed again, for the part it ran."""

    def wrap(fn: Callable[P, Coroutine[Any, Any, str]]) -> Callable[P, Coroutine[Any, Any, str]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> str:
            logs.bind(session=str(args[0]))  # every lifecycle workflow's first: the session id
            started, outcome = time.perf_counter(), "error"
            try:
                outcome = await fn(*args, **kwargs)
                return outcome
            finally:
                seconds = time.perf_counter() - started
                metrics.LIFECYCLE.labels(operation, outcome).inc()
                metrics.LIFECYCLE_DURATION.labels(operation).observe(seconds)
                message = LOGGED.get((operation, outcome))
                if message is not None:
                    log.info("%s in %.1f s", message, seconds)
                elif outcome in ("failed", "error"):
                    log.warning("%s of the session's sandbox: %s", operation, outcome)

        return run

    return wrap


def restored_name(session_id: str, version: int) -> str:
    """The name of the sandbox a restore makes: its own, not the session's first sandbox's.

    A hibernation destroys its sandbox before its compare-and-set can tell it has lost: one
    gone stale (the session archived, unarchived and resumed meanwhile) would otherwise destroy
    the sandbox the later resume made under the same name. A re-run of the same restore after
    a crash gets the same name, so that its create reuses what the first run made."""
    return f"{session_id}-{version}"


def watcher_id(session_id: str, version: int) -> str:
    return f"watch-{session_id}-{version}"


async def start_watcher(session_id: str, version: int) -> None:
    with SetWorkflowID(watcher_id(session_id, version)):
        await DBOS.start_workflow_async(watch, session_id)


@DBOS.workflow()
@observed("provision")
async def provision(session_id: str) -> str:
    """``provisioning → active``: create the sandbox, bind the repo, run hooks."""
    v = await load(session_id)
    if v is None or v.lifecycle_state != "provisioning":
        return "skipped"
    try:
        state = await create_sandbox(session_id, v.sandbox_type)
    except Exception as err:
        error = f"Sandbox creation failed: {_readable(err)}"
        await fail(session_id, "provisioning", v.lifecycle_version, error)
        return "failed"
    try:
        await bind_repo(session_id, v.sandbox_type, state)
        await install_skills(session_id, v.sandbox_type, state)
        blocked = await run_hooks("SandboxProvisioned", session_id, {"cwd": "/workspace"})
        if blocked:
            raise SandboxError("SandboxProvisioned hook blocked: " + "; ".join(blocked))
    except Exception as err:
        await destroy_sandbox(v.sandbox_type, state)
        await fail(session_id, "provisioning", v.lifecycle_version, _readable(err))
        return "failed"
    await session_hooks("SessionStart", session_id, v.sandbox_type, state, "startup")
    activated = await activate(session_id, state, "provisioning", v.lifecycle_version)
    if activated is None:
        return await _settle_unclaimed(session_id, v.sandbox_type, state)
    await start_watcher(session_id, activated.lifecycle_version)
    return "active"


async def _settle_unclaimed(session_id: str, kind: str, state: dict[str, Any]) -> str:
    """We made a sandbox but the session moved on (archived or deleted): keep its work as a
    snapshot if the session still exists, and never leave the sandbox running."""
    now = await load(session_id)
    if now is None:
        await destroy_sandbox(kind, state)
        await forget_repo(session_id)
        return "gone"
    snap = await snapshot_and_destroy(kind, state)
    if "kept" in snap:
        return await _keep(session_id, -1, kind, state, snap["kept"])
    outcome = await record_hibernated(session_id, -1, snap)
    if outcome == "gone":
        await delete_snapshot(kind, snap["snapshot_url"])
    return outcome


@DBOS.workflow()
async def watch(session_id: str) -> str:
    """Holds the session's lease and sleeps durably until the next deadline."""
    run_id = DBOS.workflow_id
    assert run_id is not None
    if not await claim(session_id, run_id):
        return "not-leased"
    while True:
        action, value = await plan(session_id, run_id)
        if action == "exit":
            return "exit"
        if action == "sleep":
            await DBOS.sleep_async(value)
            continue
        return await hibernate(session_id, int(value))


@DBOS.workflow()
@observed("hibernate")
async def hibernate(session_id: str, version: int) -> str:
    """``hibernating → hibernated``: hooks, snapshot, stop; the previous snapshot goes last.
    A snapshot that cannot be made leaves it ``hibernated`` on its kept workspace (the previous
    snapshot stays too: nothing is deleted before its replacement exists)."""
    v = await load(session_id)
    if v is None or v.lifecycle_state != "hibernating" or v.lifecycle_version != version:
        return "skipped"
    await run_hooks("BeforeHibernate", session_id, {"cwd": "/workspace"})
    previous = v.snapshot_url
    if v.sandbox_state is None:
        snap: dict[str, Any] = {}
    else:
        await refresh_diff(session_id)  # the cached diff stays readable while hibernated
        try:
            snap = await snapshot_and_destroy(v.sandbox_type, v.sandbox_state)
        except Exception as err:  # the sandbox is unreachable, or its processes unkillable
            also = await stop_sandbox(v.sandbox_type, v.sandbox_state)
            error = f"Snapshot failed: {_readable(err)}{also}"
            await fail(session_id, "hibernating", version, error)
            return "failed"
        if "kept" in snap:
            return await _keep(session_id, version, v.sandbox_type, v.sandbox_state, snap["kept"])
    outcome = await record_hibernated(session_id, version, snap)
    if outcome == "gone":
        await delete_snapshot(v.sandbox_type, snap.get("snapshot_url"))
    elif snap and previous and previous != snap["snapshot_url"]:
        await delete_snapshot(v.sandbox_type, previous)
    return outcome


@DBOS.workflow()
@observed("restore")
async def restore(session_id: str, version: int) -> str:
    """``restoring → active`` from the workspace a failed snapshot kept, if there is one (it is
    newer than any snapshot), else from the snapshot; a missing or corrupt one → ``failed``."""
    v = await load(session_id)
    if v is None or v.lifecycle_state != "restoring" or v.lifecycle_version != version:
        return "skipped"
    kept = v.sandbox_state if cas.workspace_kept(v.sandbox_state) else None
    if kept is None and v.snapshot_url is None:
        await fail(session_id, "restoring", version, "No snapshot to restore from")
        return "failed"
    try:
        if kept is not None:
            state = await reuse_kept(v.sandbox_type, kept)
        else:
            assert v.snapshot_url is not None
            name = restored_name(session_id, version)
            state = await restore_sandbox(name, v.sandbox_type, v.snapshot_url)
    except Exception as err:
        await fail(session_id, "restoring", version, f"Restore failed: {_readable(err)}")
        return "failed"
    if state is None:
        await fail(session_id, "restoring", version, KEPT_GONE, forget_sandbox=True)
        return "failed"
    await install_skills(session_id, v.sandbox_type, state)
    await run_hooks("AfterRestore", session_id, {"cwd": "/workspace"})
    await session_hooks("SessionStart", session_id, v.sandbox_type, state, "resume")
    activated = await activate(session_id, state, "restoring", version)
    if activated is None:  # archived/deleted meanwhile: the snapshot or kept workspace stays
        if kept is None:  # a kept one is still the session's: archive or delete sees to it
            await destroy_sandbox(v.sandbox_type, state)
        return "superseded"
    await start_watcher(session_id, activated.lifecycle_version)
    return "active"


@DBOS.workflow()
@observed("archive")
async def archive(session_id: str) -> str:
    """After an archive: snapshot and remove a running sandbox so unarchive can resume it."""
    v = await load(session_id)
    if v is None or v.lifecycle_state != "archived":
        return "nothing-to-stop"
    await session_hooks("SessionEnd", session_id, v.sandbox_type, v.sandbox_state, "archived")
    if v.sandbox_state is None:
        return "nothing-to-stop"
    previous = v.snapshot_url
    try:
        snap = await snapshot_and_destroy(v.sandbox_type, v.sandbox_state)
    except Exception as err:
        # The sandbox is unreachable or its processes unkillable: remove what can be removed,
        # and let unarchive through (reference §3).
        await destroy_sandbox(v.sandbox_type, v.sandbox_state)
        await _db(
            cas.set_fields,
            session_id,
            in_states={"archived"},
            sandbox_state=None,
            lifecycle_error=f"Archive finalization failed: {_readable(err)}",
        )
        return "stopped-without-snapshot"
    if "kept" in snap:  # unarchive then resumes from the kept workspace
        return await _keep(session_id, -1, v.sandbox_type, v.sandbox_state, snap["kept"])
    outcome = await record_hibernated(session_id, -1, snap)
    if outcome == "gone":
        await delete_snapshot(v.sandbox_type, snap["snapshot_url"])
    elif previous and previous != snap["snapshot_url"]:
        await delete_snapshot(v.sandbox_type, previous)
    return outcome


@DBOS.workflow()
async def remove(
    session_id: str, kind: str, state: dict[str, Any] | None, snapshot_url: str | None
) -> str:
    """After a delete: ``SessionEnd`` hooks, then the sandbox and the snapshot go too."""
    await session_hooks("SessionEnd", session_id, kind, state, "deleted")
    await destroy_sandbox(kind, state)
    await delete_snapshot(kind, snapshot_url)
    return "removed"
