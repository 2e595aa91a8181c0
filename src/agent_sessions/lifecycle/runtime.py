"""DBOS set-up for ``serve`` and ``worker`` (docs/architecture.md, Persistence).

One process = one executor id. The application version is pinned so that a restart with new
code still recovers the runs of the old one; bump it only with a workflow change that cannot
replay old histories.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from dbos import DBOS, DBOSClient, DBOSConfig

from agent_sessions import tracing
from agent_sessions.hooks import HookRunner
from agent_sessions.lifecycle.context import LifecycleContext, set_context
from agent_sessions.settings import Settings
from agent_sessions.store import Database

T = TypeVar("T")

APPLICATION_VERSION = "agent-sessions-workflows-1"
TURN_QUEUE = "agent-turns"
"""The DBOS queue agent turns go through: bounded per process and, if configured, globally."""


def system_database_url(settings: Settings) -> str:
    """PostgreSQL apps keep DBOS's tables in the same database (schema ``dbos``)."""
    if settings.is_sqlite:
        return f"sqlite:///{_sqlite_system_path(settings)}"
    return settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _sqlite_system_path(settings: Settings) -> Path:
    return (settings.data_dir / "dbos.sqlite").resolve()


def _use_wal(path: Path) -> None:
    """Put DBOS's SQLite file in WAL mode (it persists in the file). DBOS leaves the default
    rollback journal, which costs several fsyncs per checkpoint and blocks readers (the SSE
    streams poll) during every write; WAL with synchronous=FULL keeps every commit durable."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def start(settings: Settings, db: Database, context: LifecycleContext | None = None) -> None:
    """Configure the lifecycle context and launch DBOS (recovering this executor's runs)."""
    set_context(context or LifecycleContext(settings, db, HookRunner(settings.hooks_file)))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.is_sqlite:
        _use_wal(_sqlite_system_path(settings))
    # DBOS's INFO lines are about its own start-up (and advertise its hosted console).
    wanted = logging.getLevelNamesMapping()[settings.log_level]
    log_level = max(logging.WARNING, wanted)
    config: DBOSConfig = {
        "name": "agent-sessions",
        "system_database_url": system_database_url(settings),
        "application_version": application_version(settings),
        "executor_id": settings.executor_id,
        "log_level": logging.getLevelName(log_level),
        "notification_listener_polling_interval_sec": 0.05,
        # DBOS's default pool is unbounded and also serves asyncio.to_thread: 16 parallel
        # session creations grew it to 256 threads (bench/lifecycle.py). Bound it.
        "max_executor_threads": 64,
    }
    if settings.is_sqlite:
        # DBOS pings its pool's connection on every checkout (a `SELECT 1`, five or six per
        # agent step); a connection to a local file cannot have gone away.
        config["db_engine_kwargs"] = {"pool_pre_ping": False}
    if tracing.configure(settings.otlp_endpoint, settings.otel_service_name):
        # DBOS's spans go to the provider tracing.py installed (DBOS adds an exporter of its
        # own only for endpoints given here); its logs stay with ours, not OTLP.
        config["enable_otlp"] = True
    logging.getLogger("dbos").setLevel(log_level)
    with _dbos_logs(log_level, lambda r: not str(r.msg).startswith(_NO_OTLP_LOGS)):
        DBOS(config=config)
    if hosts_own_turns(settings):  # another host's turns are not for this one to dequeue
        # (a global limit is refused with local sandboxes on several hosts: on one it may be)
        shared = [TURN_QUEUE] if settings.agent_global_concurrency else []
        DBOS.listen_queues([reconcile_queue(settings), *shared])
    # DBOS says at INFO how many workflows of this executor it recovers: that line is kept.
    with _dbos_logs(
        min(log_level, wanted),
        lambda r: r.levelno >= log_level or str(r.msg).startswith(_RECOVERY),
    ):
        DBOS.launch()
    off_loop(lambda: register_turn_queue(settings))


def hosts_own_turns(settings: Settings) -> bool:
    """Local sandboxes where several processes may share the database: a turn must run on the
    host of its session's sandbox, which is the process that accepted it (forwarded there,
    docs/architecture.md, Scale-out); no shared queue may hand it to another."""
    return settings.sandbox_provider == "local" and not settings.is_sqlite


def application_version(settings: Settings) -> str:
    """DBOS's application version, per host when hosts own their turns.

    DBOS recovers a restarted executor's pending workflows by putting them on a queue that
    every process dequeues from (its internal one), but only a process of the workflow's
    application version dequeues it: a version of its own keeps a host's recovered turns and
    lifecycle work on the host that holds their sandboxes. The default executor id keeps the
    plain version, so a single host's pending work is recovered across this change.
    """
    if hosts_own_turns(settings) and settings.executor_id != "local":
        return f"{APPLICATION_VERSION}@{settings.executor_id}"
    return APPLICATION_VERSION


def reconcile_queue(settings: Settings) -> str:
    """The queue for turns accepted but never started (a crash in between): this host's own
    when hosts own their turns, else the shared one."""
    return f"{TURN_QUEUE}@{settings.executor_id}" if hosts_own_turns(settings) else TURN_QUEUE


def register_turn_queue(settings: Settings) -> None:
    """The ``agent-turns`` queue: every turn with a global limit, else only reconciled ones.

    Turns are enqueued in their account's partition. With a global limit the queue is
    partitioned (any ``partition_*`` limit switches DBOS to it; ``partition_concurrency``
    equal to the global limit caps nothing more): each poll then visits the accounts with
    waiting turns in random order, each in its own order of arrival, instead of taking the
    oldest turns of the whole queue. Without one, the keys are kept and not used.
    """
    global_limit = settings.agent_global_concurrency
    if hosts_own_turns(settings):
        DBOS.register_queue(
            reconcile_queue(settings),
            worker_concurrency=settings.agent_worker_concurrency,
            polling_interval_sec=0.5,
            on_conflict="always_update",
        )
    DBOS.register_queue(
        TURN_QUEUE,
        # DBOS refuses a worker limit above the global one (a global 4 with the default
        # worker 8 stopped start-up): one process can never run more than all together.
        worker_concurrency=min(settings.agent_worker_concurrency, global_limit or sys.maxsize),
        global_concurrency=global_limit,
        partition_concurrency=global_limit,
        # Turns start directly while the process has room (agent/service.py); a queued one
        # waits up to a poll, which matters only with a global limit (all turns queue).
        polling_interval_sec=0.05 if global_limit else 0.5,
        on_conflict="always_update",
    )


_NO_OTLP_LOGS = "OTLP is enabled but logger provider not set"
"""DBOS's warning when it traces without exporting its logs: this service means it so."""
_RECOVERY = "Recovering "
"""How DBOS's start-up line on the workflows it recovers (after a restart) begins."""


@contextlib.contextmanager
def _dbos_logs(level: int, keep: Callable[[logging.LogRecord], bool]) -> Iterator[None]:
    """DBOS logs at ``level`` meanwhile, only the lines ``keep`` accepts (start-up only)."""
    logger = logging.getLogger("dbos")
    before = logger.level
    logger.setLevel(level)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
        logger.setLevel(before)


def off_loop(fn: Callable[[], T]) -> T:
    """Call a DBOS function that refuses to run on a thread with a running event loop (the
    app's lifespan is one); it only blocks briefly, at start-up."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def stop() -> None:
    DBOS.destroy(workflow_completion_timeout_sec=0)
    tracing.flush()
    set_context(None)


def workflow_client(settings: Settings) -> DBOSClient:
    """DBOS's client on the system database, for the operator's commands (no launch)."""
    return DBOSClient(system_database_url=system_database_url(settings))
