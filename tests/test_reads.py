"""The hot-read path (store/reads.py): rows read straight from the SQLite driver must equal what
SQLAlchemy itself returns for the same statement, type by type, on every database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import literal, select, update
from sqlalchemy.exc import StatementError

from agent_sessions.store import accounts, sessions
from agent_sessions.store.models import SessionRow
from agent_sessions.store.reads import Query, first
from tests.conftest import Account, Backend


def _session_with_every_type(backend: Backend, alice: Account) -> str:
    with backend.db.write() as s:
        row, _ = sessions.create_session(
            s,
            account_id=alice.id,
            new=sessions.NewSession(
                title="réads ✓",
                clone_url="https://github.com/o/r.git",
                is_new_branch=True,
                global_skill_refs=({"source": "x", "name": "y"},),
            ),
        )
        s.execute(
            update(SessionRow)
            .where(SessionRow.id == row.id)
            .values(
                sandbox_state={"provider": "local", "name": row.id, "n": [1, 2.5, None]},
                snapshot_created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
                snapshot_size_bytes=2**40,
                lines_added=7,
            )
        )
        return row.id


def test_raw_rows_equal_sqlalchemy_rows(backend: Backend, alice: Account) -> None:
    sid = _session_with_every_type(backend, alice)
    with backend.db.read() as s:
        expected = sessions.read_owned(s, sid, alice.id)

    async def fast() -> object:
        return await backend.db.query_call(lambda r: sessions.read_owned(r, sid, alice.id))

    import anyio

    got = anyio.run(fast)
    assert tuple(got) == tuple(expected)  # type: ignore[arg-type]
    assert got.snapshot_created_at == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)  # type: ignore[attr-defined]
    assert got.snapshot_created_at.tzinfo is not None  # type: ignore[attr-defined]
    assert got.is_new_branch is True  # type: ignore[attr-defined]
    assert got.sandbox_state["n"] == [1, 2.5, None]  # type: ignore[attr-defined]
    assert got.snapshot_size_bytes == 2**40  # type: ignore[attr-defined]


def test_missing_rows_literals_and_errors(backend: Backend, alice: Account) -> None:
    import anyio

    from agent_sessions.exceptions import NotFound

    ping = Query(select(literal(41).label("a"), literal("x")))

    async def run() -> None:
        row = await backend.db.query_call(lambda r: first(r, ping))
        assert tuple(row) == (41, "x")  # type: ignore[arg-type]
        assert (
            await backend.db.query_call(lambda r: accounts.active_key_by_hash(r, "0" * 64)) is None
        )
        with pytest.raises(NotFound):
            await backend.db.query_call(lambda r: sessions.read_owned(r, "missing", alice.id))
        with pytest.raises((KeyError, StatementError)):  # a parameter it needs is missing
            await backend.db.query_call(lambda r: first(r, sessions._SESSION_BY_ID))

    anyio.run(run)


def test_each_thread_reads_on_its_own_connection(backend: Backend, alice: Account) -> None:
    """Readers are per thread (a connection is not shared across threads) and see commits made
    after they were opened: no read transaction outlives its statement."""
    if backend.name != "sqlite":
        pytest.skip("the raw reader is SQLite's; PostgreSQL reads use the pool")
    import anyio

    sid = _session_with_every_type(backend, alice)
    readers: list[object] = []

    def in_thread() -> None:
        async def run() -> None:
            readers.append(backend.db._raw_reader())
            await backend.db.query_call(lambda r: sessions.read_owned(r, sid, alice.id))

        anyio.run(run)

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in readers}) == 3

    async def title() -> str:
        row = await backend.db.query_call(lambda r: sessions.read_owned(r, sid, alice.id))
        return str(row.title)

    assert anyio.run(title) == "réads ✓"
    with backend.db.write() as s:
        s.execute(update(SessionRow).where(SessionRow.id == sid).values(title="changed"))
    assert anyio.run(title) == "changed"
