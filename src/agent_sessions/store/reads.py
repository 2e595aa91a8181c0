"""Hot one-row reads, compiled once and run straight on the SQLite driver.

An authenticated ``GET /api/sessions/{id}`` is two one-row ``SELECT``\\s. Through a SQLAlchemy
``Connection`` each cost about 0.25 ms of Python (pool checkout, transaction bookkeeping, the
result machinery) around 0.03 ms of SQLite: over a third of the request (``bench/api.py``,
docs/adr/0008). A :class:`Query` keeps the SQLAlchemy statement, which stays the one source of
truth and runs as usual on PostgreSQL and inside ORM sessions, and adds for SQLite its compiled
SQL with SQLAlchemy's own bind and result processors, so a row decodes exactly as SQLAlchemy
would decode it.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

_Processor = Callable[[Any], Any] | None
AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class _Bind:
    name: str
    required: bool  # a parameter the caller gives; else a literal with its own value
    value: Any
    process: _Processor


@dataclass(frozen=True)
class _Compiled:
    sql: str
    binds: tuple[_Bind, ...]
    results: tuple[_Processor, ...]
    make_row: Callable[[Iterable[Any]], Any]


class Query:
    """A ``SELECT`` built once at import; run it with :func:`first`."""

    def __init__(self, stmt: AnySelect) -> None:
        self.stmt = stmt
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        done = self._compiled.get(dialect.name)
        if done is None:
            done = self._compiled[dialect.name] = _compile(self.stmt, dialect)
        return done


def _compile(stmt: AnySelect, dialect: Dialect) -> _Compiled:
    compiled = stmt.compile(dialect=dialect)
    names = compiled.positiontup or ()
    binds = tuple(
        _Bind(
            name,
            compiled.binds[name].required,
            compiled.binds[name].effective_value,
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
        )
        for name in names
    )
    columns = list(stmt.selected_columns)
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
    return _Compiled(str(compiled), binds, results, row._make)


class RawReader:
    """Runs :class:`Query` objects on one SQLite DBAPI connection in autocommit mode: each
    ``SELECT`` is its own read transaction, so nothing holds a WAL snapshot between calls.

    Not thread-safe: :class:`~agent_sessions.store.database.Database` keeps one per thread.
    """

    def __init__(self, conn: PoolProxiedConnection, dialect: Dialect) -> None:
        self._owner = conn  # closes the driver's connection once collected
        self._conn = cast(sqlite3.Connection, conn.dbapi_connection)  # set after detach()
        self.dialect = dialect

    def close(self) -> None:
        self._owner.close()

    def first(self, query: Query, params: Mapping[str, Any]) -> Any | None:
        c = query.compiled(self.dialect)
        args = []
        for bind in c.binds:
            value = params[bind.name] if bind.required else bind.value
            args.append(value if bind.process is None else bind.process(value))
        try:
            raw = self._conn.execute(c.sql, args).fetchone()
        except sqlite3.Error as err:  # the same exception types as through SQLAlchemy
            raise DBAPIError.instance(c.sql, args, err, sqlite3.Error) from err
        if raw is None:
            return None
        return c.make_row(v if p is None else p(v) for v, p in zip(raw, c.results, strict=True))


Reader = Session | Connection | RawReader
"""Anything :func:`first` runs on."""


def first(db: Reader, query: Query, **params: Any) -> Any | None:
    """The first row of ``query`` (attribute access by column key), or None."""
    if isinstance(db, RawReader):
        return db.first(query, params)
    if isinstance(db, Session):
        # A Core statement needs none of the ORM's execution (its context, its compile cache
        # key per call): on the session's own connection and transaction it is the same read.
        return db.connection().execute(query.stmt, params).first()
    return db.execute(query.stmt, params).first()
