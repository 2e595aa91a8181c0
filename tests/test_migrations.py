"""Schema migrations from the previous head with data in it, on SQLite and PostgreSQL.

Revision 0003 (chat ids per account, message ids per chat; ADR 9) must keep every row, leave the
schema the models describe (autogenerate finds nothing to do), and give back the old schema on
downgrade while no ids are shared yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agent_sessions.store import chats, turns, upgrade
from agent_sessions.store.migrate import alembic_config
from agent_sessions.store.models import Base, Chat, ChatKey
from tests.conftest import Backend, make_backend

ALICE, BOB = "a" * 36, "b" * 36
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def at_0002(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with make_backend(request.param, tmp_path, revision="0002") as backend:
        yield backend


def _tables(conn: sa.Connection) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(conn)
    return dict(metadata.tables)


def _session(sid: str, account_id: str) -> dict[str, Any]:
    return {
        "id": sid, "account_id": account_id, "title": sid, "status": "running",
        "is_new_branch": False, "global_skill_refs": [], "sandbox_type": "local",
        "lifecycle_version": 0, "created_at": T0, "updated_at": T0,
    }  # fmt: skip


def _chat(cid: str, sid: str, stream: str | None = None) -> dict[str, Any]:
    return {"id": cid, "session_id": sid, "title": f"title {cid}", "active_stream_id": stream,
            "created_at": T0, "updated_at": T0}  # fmt: skip


def _message(mid: str, cid: str, role: str, second: int) -> dict[str, Any]:
    return {"id": mid, "chat_id": cid, "role": role, "parts": {"id": mid, "text": f"{cid}/{mid}"},
            "created_at": T0 + timedelta(seconds=second)}  # fmt: skip


def _run(rid: str, cid: str, sid: str, account_id: str, message_id: str) -> dict[str, Any]:
    return {
        "id": rid, "chat_id": cid, "session_id": sid, "account_id": account_id,
        "model_id": "openai/x", "assistant_message_id": message_id, "status": "running",
        "stop_requested": False, "headless": False, "attempts": 1, "input_tokens": 0,
        "output_tokens": 0, "tool_calls": 0, "steps": 0, "created_at": T0,
    }  # fmt: skip


SEED: dict[str, list[dict[str, Any]]] = {
    "accounts": [
        {"id": ALICE, "name": "alice", "created_at": T0},
        {"id": BOB, "name": "bob", "created_at": T0},
    ],
    "sessions": [_session("sa1", ALICE), _session("sa2", ALICE), _session("sb", BOB)],
    "chats": [_chat("c1", "sa1", "run-1"), _chat("c2", "sa2"), _chat("cb", "sb")],
    "chat_messages": [
        _message("m1", "c1", "user", 0),
        _message("a1", "c1", "assistant", 1),
        _message("m2", "c2", "user", 0),
        _message("mb", "cb", "user", 0),
    ],
    "chat_reads": [
        {"account_id": ALICE, "chat_id": "c1", "last_read_at": T0},
        {"account_id": BOB, "chat_id": "cb", "last_read_at": T0},
    ],
    "chat_runs": [_run("run-1", "c1", "sa1", ALICE, "a1"), _run("run-b", "cb", "sb", BOB, "ab")],
}
OWNER = {"c1": ALICE, "c2": ALICE, "cb": BOB}


def _seed(backend: Backend) -> None:
    with backend.db.engine.begin() as conn:
        tables = _tables(conn)
        for name, rows in SEED.items():
            conn.execute(tables[name].insert(), rows)


def _utc(value: Any) -> Any:
    """SQLite's timestamps come back naive (they are UTC)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _contents(backend: Backend) -> dict[str, list[dict[str, Any]]]:
    """The seeded tables' rows, each as a dict of the seeded columns plus ``account_id``."""
    with backend.db.engine.connect() as conn:
        tables = _tables(conn)
        out = {}
        for name, seeded in SEED.items():
            table = tables[name]
            columns = [c for c in table.columns if c.name in seeded[0] or c.name == "account_id"]
            rows = [
                {k: _utc(v) for k, v in r.items()}
                for r in conn.execute(sa.select(*columns)).mappings()
            ]
            out[name] = sorted(rows, key=lambda r: sorted(map(str, r.items())))
        return out


def _expected_after_upgrade() -> dict[str, list[dict[str, Any]]]:
    owners = {"chats": lambda r: OWNER[r["id"]], "chat_messages": lambda r: OWNER[r["chat_id"]]}
    out = {}
    for name, rows in SEED.items():
        if name in owners:
            rows = [{**r, "account_id": owners[name](r)} for r in rows]
        out[name] = sorted(rows, key=lambda r: sorted(map(str, r.items())))
    return out


def _schema_differences(backend: Backend) -> list[Any]:
    with backend.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_0003_keeps_every_row_and_gives_the_models_schema(at_0002: Backend) -> None:
    backend = at_0002
    _seed(backend)
    upgrade(backend.db)

    assert _contents(backend) == _expected_after_upgrade()
    assert _schema_differences(backend) == []
    alice_c1 = ChatKey(ALICE, "c1")
    with backend.db.write() as s:  # the migrated rows through the store, and the new freedom
        assert [m.id for m in chats.messages(s, alice_c1)] == ["m1", "a1"]
        live = turns.live_run(s, alice_c1)
        assert live is not None and live.id == "run-1"
        assert turns.message_of(s, alice_c1, "a1") == {"id": "a1", "text": "c1/a1"}
        bobs = chats.create_chat(s, account_id=BOB, session_id="sb", chat_id="c1")
        turns.upsert_message(s, chat=bobs.key, message_id="m1", role="user", message={"b": 1})
        turns.upsert_message(
            s, chat=ChatKey(ALICE, "c2"), message_id="m1", role="user", message={"a": 2}
        )
    with backend.db.write() as s:  # the new foreign keys cascade from a chat to what refers to it
        chat = s.get(Chat, alice_c1)
        assert chat is not None
        s.delete(chat)
    after = _contents(backend)
    assert sorted((r["account_id"], r["id"]) for r in after["chats"]) == [
        (ALICE, "c2"), (BOB, "c1"), (BOB, "cb")
    ]  # fmt: skip
    assert sorted((r["chat_id"], r["id"]) for r in after["chat_messages"]) == [
        ("c1", "m1"), ("c2", "m1"), ("c2", "m2"), ("cb", "mb")
    ]  # fmt: skip
    assert [r["chat_id"] for r in after["chat_reads"]] == ["cb"]
    assert [r["id"] for r in after["chat_runs"]] == ["run-b"]


def test_0003_downgrades_while_ids_are_not_shared(at_0002: Backend) -> None:
    backend = at_0002
    _seed(backend)
    before = _contents(backend)
    upgrade(backend.db)
    with backend.db.migration_connection() as conn:
        command.downgrade(alembic_config(conn), "0002")
        conn.commit()
    assert _contents(backend) == before
    upgrade(backend.db)
    assert _contents(backend) == _expected_after_upgrade()
