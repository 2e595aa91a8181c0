"""Group commit of stream values (``agent.group_commit``): what several workflows write at once
goes in a few transactions, and reads back through DBOS's own stream read, in order, on SQLite
and PostgreSQL. This pins the DBOS internals the module relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from dbos import DBOS
from dbos import error as dbos_error
from dbos._dbos import _get_dbos_instance

from agent_sessions.agent import group_commit
from tests.agent.conftest import AgentsFactory

KEY = "group-commit-test"


@DBOS.step()
async def _write_values(tag: str, n: int) -> None:
    await asyncio.gather(*(group_commit.write(KEY, f"{tag}-{i}") for i in range(n)))


@DBOS.workflow()
async def _writer(tag: str, n: int) -> str:
    await _write_values(tag, n)
    await group_commit.write(KEY, f"{tag}-from-the-workflow")  # DBOS's own, recorded write
    await _write_values(f"{tag}-again", n)
    return tag


def test_values_of_many_writers_go_in_few_transactions_and_read_back_in_order(
    agents: AgentsFactory,
) -> None:
    agents()  # a service with DBOS launched on this backend
    engine = _get_dbos_instance()._sys_db.engine
    inserts: list[Any] = []  # one entry per row

    def count(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO") and "streams" in statement:
            inserts.extend(params if many else [params])

    commits: list[Any] = []
    sa.event.listen(engine, "before_cursor_execute", count)
    sa.event.listen(engine, "commit", lambda conn: commits.append(conn))
    n, writers = 25, 4
    try:
        handles = [DBOS.start_workflow(_writer, f"w{i}", n) for i in range(writers)]
        assert sorted(h.get_result() for h in handles) == [f"w{i}" for i in range(writers)]
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    values = writers * (2 * n + 1)
    assert len(inserts) == values
    # Each writer's 25 values of a step go in one transaction at most (fewer when writers
    # share one); without grouping this would be one commit per value (204), plus the
    # workflows' own records.
    assert len(commits) < values / 3, (len(commits), values)
    for i, handle in enumerate(handles):
        read = list(DBOS.read_stream(handle.workflow_id, KEY, timeout_seconds=5))
        assert read == [
            *(f"w{i}-{k}" for k in range(n)),
            f"w{i}-from-the-workflow",
            *(f"w{i}-again-{k}" for k in range(n)),
        ]


@DBOS.step()
async def _write_beside_a_stale_writer(tag: str) -> str:
    """One good value and, in the same group, a value whose writer no longer owns its workflow
    (its ownership token is stale): the group fails, each value is written alone, and only the
    stale writer gets the error."""
    loop = asyncio.get_running_loop()
    workflow_id = DBOS.workflow_id or ""
    stale = group_commit._Value(
        workflow_id, 10_000, "stale-owner", KEY, '"stale"', "py_pickle", loop.create_future()
    )
    good = asyncio.ensure_future(group_commit.write(KEY, f"{tag}-good"))
    await asyncio.sleep(0)  # the good value is pending; the stale one joins its group
    group_commit._groups[loop].add(stale)
    await good
    try:
        await stale.done
    except dbos_error.DBOSWorkflowConflictIDError:
        return "refused"
    return "written"


@DBOS.workflow()
async def _stale_writer(tag: str) -> str:
    return await _write_beside_a_stale_writer(tag)


def test_a_failed_group_is_written_value_by_value_and_only_the_failing_writer_errs(
    agents: AgentsFactory,
) -> None:
    agents()
    handle = DBOS.start_workflow(_stale_writer, "s")
    assert handle.get_result() == "refused"
    assert list(DBOS.read_stream(handle.workflow_id, KEY, timeout_seconds=5)) == ["s-good"]
