"""Engine set-up and the two ways to touch the database: :meth:`Database.read` and
:meth:`Database.write`.

SQLite rules (docs/architecture.md, Persistence) live here and nowhere else: WAL,
``synchronous=FULL`` (an acknowledged write survives power loss), ``busy_timeout``, foreign keys,
and ``BEGIN IMMEDIATE`` for every write transaction behind one in-process writer lock. Measured in
the checklist: with busy_timeout alone, 64 writers had p99 960 ms; behind one lock, 46 ms.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from agent_sessions.exceptions import DatabaseUnavailable
from agent_sessions.store.reads import RawReader, Reader

T = TypeVar("T")

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


_LIBPQ_WHERE = re.compile(r"^connection failed: connection to server at .*? failed: ")

# An escaped U+0000 in JSON text, unless its backslash is itself escaped (a literal "\\u0000").
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def json_dumps(value: Any) -> str:
    """JSON for the JSON columns, with U+0000 stored as U+FFFD on both databases.

    PostgreSQL's jsonb refuses U+0000 ("unsupported Unicode escape sequence"), and a command
    that prints one reached a stored message through the tool output: the whole turn failed
    when it was saved. SQLite would keep it; replacing it on both keeps them alike.
    """
    text = json.dumps(value)
    return _ESCAPED_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _sqlite_engine(url: str, *, immediate: bool | None) -> Engine:
    """``immediate``: True for writers (BEGIN IMMEDIATE), False for readers (BEGIN), None for
    single-statement queries (no explicit transaction, nothing to roll back on return)."""
    db_path = make_url(url).database
    if db_path and db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 10},
        # Readers: keep a connection for every threadpool worker (anyio's default limit is 40).
        # With a smaller pool, connections beyond it are closed on return and reopened on the
        # next checkout, and each reopen runs the PRAGMAs below: under 64 concurrent GETs that
        # churn was a third of the server's CPU (bench/api.py). Writers are serialised: 2 is
        # plenty.
        pool_size=40 if not immediate else 2,
        max_overflow=16,
        json_serializer=json_dumps,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that our BEGIN below is the only one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cur.execute(pragma)
        cur.close()

    if immediate is None:
        return engine
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: exec_driver_sql would cost a full SQLAlchemy execution.
        conn.connection.driver_connection.execute(begin)

    return engine


def _postgres_engine(url: str) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        json_serializer=json_dumps,
        connect_args={
            "options": "-c statement_timeout=30000 -c lock_timeout=10000 "
            "-c idle_in_transaction_session_timeout=60000"
        },
    )


class Database:
    """Owns the engines. Use ``read()`` for queries and ``write()`` for anything that writes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, immediate=False)
            self._write_engine = _sqlite_engine(url, immediate=True)
            self._query_engine = _sqlite_engine(url, immediate=None)
            self._write_lock: contextlib.AbstractContextManager[Any] = threading.Lock()
        else:
            self.engine = _postgres_engine(url)
            self._write_engine = self.engine
            self._query_engine = self.engine
            self._write_lock = contextlib.nullcontext()
        self._readers = threading.local()
        self._all_readers: weakref.WeakSet[RawReader] = weakref.WeakSet()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; its transaction is rolled back at the end."""
        with Session(self.engine, expire_on_commit=False, autoflush=False) as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success, rolls back on error.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE`` under the process-wide writer
        lock, so read-then-write code never meets SQLITE_BUSY half-way. On PostgreSQL, callers
        lock the rows they read with ``SELECT … FOR UPDATE``.
        """
        with (
            self._write_lock,
            Session(self._write_engine, expire_on_commit=False, autoflush=False) as session,
            session.begin(),
        ):
            yield session

    @contextlib.contextmanager
    def migration_connection(self) -> Iterator[Connection]:
        """A connection for DDL (on SQLite the writer engine, so BEGIN IMMEDIATE applies)."""
        with self._write_lock, self._write_engine.connect() as conn:
            yield conn

    def check(self) -> None:
        """Connect once, so that a database that is down or missing stops a command with one
        line naming it (:class:`DatabaseUnavailable`) before anything else starts."""
        try:
            with self._query_engine.connect():
                pass
        except OperationalError as err:
            url = make_url(self.url)
            shown = url.set(drivername=url.get_backend_name()).render_as_string()
            reason = " ".join(str(err.orig).split())  # libpq's message spans lines
            reason = _LIBPQ_WHERE.sub("", reason)  # the URL says where already
            raise DatabaseUnavailable(f"cannot connect to the database {shown}: {reason}") from None

    def _raw_reader(self) -> RawReader:
        """This thread's :class:`RawReader` (SQLite only), on a connection taken out of the
        pool: it lives as long as the thread (a test client's portal thread, the event loop)
        and closes when the thread's reader is collected, or at :meth:`dispose`."""
        reader: RawReader | None = getattr(self._readers, "reader", None)
        if reader is None:
            conn = self._query_engine.raw_connection()
            conn.detach()
            reader = RawReader(conn, self._query_engine.dialect)
            self._readers.reader = reader
            self._all_readers.add(reader)
        return reader

    async def query_call(self, fn: Callable[[Reader], T]) -> T:
        """Run :mod:`~agent_sessions.store.reads` queries: inline on SQLite, straight on the
        driver (see :meth:`read_call` and the reads module); else on a Core connection in the
        pool."""
        if self.is_sqlite:
            return fn(self._raw_reader())
        return await anyio.to_thread.run_sync(self._query_call, fn)

    def _query_call(self, fn: Callable[[Reader], T]) -> T:
        with self._query_engine.connect() as conn:
            return fn(conn)

    async def read_call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a read session. SQLite reads run inline: a WAL read never waits on a
        lock and costs less than the thread hop; PostgreSQL reads go to the thread pool."""
        if self.is_sqlite:
            with self.read() as session:
                return fn(session)
        return await anyio.to_thread.run_sync(self._read_call, fn)

    async def write_call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a write transaction in the thread pool (it may wait for the lock)."""
        return await anyio.to_thread.run_sync(self._write_call, fn)

    def _read_call(self, fn: Callable[[Session], T]) -> T:
        with self.read() as session:
            return fn(session)

    def _write_call(self, fn: Callable[[Session], T]) -> T:
        with self.write() as session:
            return fn(session)

    def dispose(self) -> None:
        for reader in list(self._all_readers):
            reader.close()
        self._readers = threading.local()
        for engine in {self.engine, self._write_engine, self._query_engine}:
            engine.dispose()
