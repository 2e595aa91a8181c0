"""Group commit of stream values: one transaction for what every turn of the process writes.

DBOS's ``write_stream`` is one transaction per value. A turn writes a value per 25 ms batch of
chunks, so 50 turns streaming at once asked for some 2,000 commits a second; SQLite with
``synchronous=FULL`` fsyncs each and managed a few hundred on this class of disk, which capped
a process at about ten streaming turns whatever its CPU (``bench/capacity.py``). Here a value
written from inside a step joins whatever other turns are writing: the first write commits at
once, and the values that arrive while a commit is in flight go together in the next one. A
value is still durable before its writer goes on (its reader in this process sees it only
then), so what a client was shown survives ``kill -9`` as before (ADR 16).

DBOS has no public batched write, so this module — and only this one — uses DBOS internals:
its stream table (the INSERT that takes a stream's next offset, with bound parameters), its
workflow ownership check (a workflow handed to another executor gets no more writes from this
one; here one statement for all of a group's workflows), the step context (workflow id, step
id, ownership token, serialization) and the stream notification (PostgreSQL's LISTEN/NOTIFY).
``tests/agent/test_group_commit.py`` pins what is relied on: values of several workflows read
back through ``DBOS.read_stream`` in order, on both databases, and a stale owner refused.

A transaction that fails (a workflow no longer owned here, a conflict) is retried value by
value, so that the error reaches only the writer it belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from dbos import DBOS
from dbos import error as dbos_error
from dbos._context import current_owner_xid, get_local_dbos_context  # see the docstring
from dbos._dbos import _get_dbos_instance
from dbos._serialization import serialize_value
from dbos._sys_db import _dbos_streams_channel

OFFSET_CONFLICT_RETRIES = 50


@dataclass
class _Value:
    workflow_id: str
    function_id: int
    owner_xid: str | None
    key: str
    serialized: str | None
    serialization: str
    done: asyncio.Future[None]


async def write(key: str, value: Any) -> None:
    """Write ``value`` to the calling workflow's stream ``key``; returns once committed.

    Outside a step (in workflow code) DBOS's own write is used: there it is recorded as a step
    of the workflow, and skipped when the workflow is replayed.
    """
    ctx = get_local_dbos_context()
    if ctx is None or not ctx.is_step():
        await DBOS.write_stream_async(key, value)
        return
    sys_db = _get_dbos_instance()._sys_db
    serialized, serialization = serialize_value(value, ctx.serialization_type, sys_db.serializer)
    loop = asyncio.get_running_loop()
    pending = _Value(
        ctx.workflow_id, ctx.function_id, current_owner_xid(ctx.workflow_id, ctx), key,
        serialized, serialization, loop.create_future(),
    )  # fmt: skip
    group = _groups.get(loop)
    if group is None:
        group = _groups[loop] = _Group()
    group.add(pending)
    await pending.done


class _Group:
    """One event loop's values waiting for the next transaction, and the task committing them
    (DBOS runs recovered workflows on a loop of its own)."""

    def __init__(self) -> None:
        self._pending: list[_Value] = []
        self._committer: asyncio.Task[None] | None = None

    def add(self, value: _Value) -> None:
        self._pending.append(value)
        if self._committer is None:
            self._committer = asyncio.get_running_loop().create_task(self._commit_pending())

    async def _commit_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(_commit, batch)
                except asyncio.CancelledError:  # the loop is closing; it may have committed
                    for value in batch:
                        value.done.cancel()
                    raise
                except BaseException:  # DBOS's own errors (an ownership conflict) are not
                    # Exceptions: each value alone, its error to its own writer
                    await asyncio.to_thread(_commit_one_by_one, batch)
                    continue
                for value in batch:
                    if not value.done.done():
                        value.done.set_result(None)
        finally:
            self._committer = None
            for value in self._pending:  # left when the loop closes
                if not value.done.done():
                    value.done.cancel()
            self._pending = []


def _commit(batch: list[_Value]) -> None:
    """All of ``batch`` in one transaction, in order (each value takes its stream's next
    offset); the ownership checks after the inserts, as DBOS orders them, workflows sorted so
    that two transactions lock them in one order."""
    sys_db = _get_dbos_instance()._sys_db
    insert = _insert_statement(sys_db)
    with sys_db.engine.begin() as c:
        if insert is not None:  # one statement, executed for every value
            c.execute(insert, [
                {"wf": v.workflow_id, "fid": v.function_id, "key": v.key,
                 "value": v.serialized, "serialization": v.serialization}
                for v in batch
            ])  # fmt: skip
        else:
            for v in batch:
                c.execute(
                    sys_db._stream_insert_stmt(
                        v.workflow_id, v.function_id, v.key, v.serialized, v.serialization
                    )
                )
        owners = {(v.workflow_id, v.owner_xid) for v in batch if v.owner_xid is not None}
        if owners:
            _check_owners(c, sys_db, owners)
    for workflow_id, key in dict.fromkeys((v.workflow_id, v.key) for v in batch):
        sys_db._signal_notification(_dbos_streams_channel, f"{workflow_id}::{key}")


def _check_owners(c: sa.Connection, sys_db: Any, owners: set[tuple[str, str]]) -> None:
    """DBOS's ownership check (``_check_owner_txn``: the writer still owns its workflow, and
    the workflow's row stays locked until the commit, so that no hand-off lands in between),
    for every workflow of the group in one statement instead of one each."""
    ws = sys_db.tables.workflow_status
    ids = sorted({workflow_id for workflow_id, _ in owners})
    statement: sa.Executable
    if sys_db._is_sqlite:  # a write, so that it runs inside the transaction
        statement = (
            sa.update(ws)
            .where(ws.c.workflow_uuid.in_(ids))
            .values(owner_xid=ws.c.owner_xid)
            .returning(ws.c.workflow_uuid, ws.c.owner_xid)
        )
    else:  # FOR NO KEY UPDATE, in one order
        statement = (
            sa.select(ws.c.workflow_uuid, ws.c.owner_xid)
            .where(ws.c.workflow_uuid.in_(ids))
            .order_by(ws.c.workflow_uuid)
            .with_for_update(key_share=True)
        )
    found = {row[0]: row[1] for row in c.execute(statement)}
    for workflow_id, owner_xid in sorted(owners):
        if found.get(workflow_id) != owner_xid:
            raise dbos_error.DBOSWorkflowConflictIDError(workflow_id)


_inserts: weakref.WeakKeyDictionary[Any, sa.Insert | None] = weakref.WeakKeyDictionary()
"""The statement of each system database (SQLite's and PostgreSQL's tables differ)."""


def _insert_statement(sys_db: Any) -> sa.Insert | None:
    """DBOS's stream INSERT (``_stream_insert_stmt``: the value at its stream's next offset)
    with bound parameters, built once: DBOS builds one with literals per value, and building
    and compiling it was a fifth of a streaming server's CPU. None when DBOS keys its rows by
    more than the workflow id (sharded tables): then DBOS's own statement, value by value."""
    if sys_db not in _inserts:
        streams = sys_db.tables.streams
        statement = None
        if not sys_db._wf_columns("any"):
            wf, key = sa.bindparam("wf", type_=sa.Text), sa.bindparam("key", type_=sa.Text)
            next_offset = sa.func.coalesce(
                sa.select(sa.func.max(streams.c.offset))
                .where(streams.c.workflow_uuid == wf, streams.c.key == key)
                .correlate(None)
                .scalar_subquery(),
                -1,
            ) + 1  # fmt: skip
            statement = sa.insert(streams).from_select(
                ["workflow_uuid", "function_id", "key", "value", "serialization", "offset"],
                sa.select(
                    wf.label("workflow_uuid"),
                    sa.bindparam("fid", type_=sa.Integer).label("function_id"),
                    key.label("key"),
                    sa.bindparam("value", type_=sa.Text).label("value"),
                    sa.bindparam("serialization", type_=sa.Text).label("serialization"),
                    next_offset.label("offset"),
                ),
            )
        _inserts[sys_db] = statement
    return _inserts[sys_db]


def _commit_one_by_one(batch: list[_Value]) -> None:
    """After a failed group: each value alone, its error (if any) to its own writer. A value
    that met another writer of its stream taking the same offset is written again, as DBOS
    does (``write_stream_from_step``)."""
    sys_db = _get_dbos_instance()._sys_db
    for value in batch:
        for attempt in range(OFFSET_CONFLICT_RETRIES + 1):
            try:
                _commit([value])
            except sa.exc.IntegrityError as err:
                if attempt < OFFSET_CONFLICT_RETRIES and sys_db._is_unique_constraint_violation(
                    err
                ):
                    time.sleep(0.1)
                    continue
                _settle(value, err)
            except BaseException as err:  # handed to the writer waiting for it
                _settle(value, err)
            else:
                _settle(value, None)
            break


def _settle(value: _Value, err: BaseException | None) -> None:
    loop = value.done.get_loop()

    def settle() -> None:
        if value.done.done():
            return
        if err is None:
            value.done.set_result(None)
        else:
            value.done.set_exception(err)

    with contextlib.suppress(RuntimeError):  # the loop has closed
        loop.call_soon_threadsafe(settle)


_groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Group] = weakref.WeakKeyDictionary()
