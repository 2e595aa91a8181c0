"""``GET /api/usage`` and a chat's usage over HTTP, on SQLite and PostgreSQL: runs recorded as
a finished turn records them (``store.turns.finish_run``), summed by UTC day, model and session;
bad parameters are 400 in the error shape; another account's runs never show. The figures of a
real turn (the stand-in model, a subagent, cached tokens, a price) are tested end to end in
``tests/agent/test_usage.py``; migration 0007 at the end.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from agent_sessions.store import turns, upgrade, usage
from agent_sessions.store.models import Base, ChatRun
from tests.conftest import Account, Backend, make_backend

_ids = itertools.count()


def _session(client: TestClient, account: Account) -> tuple[str, str]:
    r = client.post("/api/sessions", json={}, headers=account.headers)
    assert r.status_code == 200, r.text
    return r.json()["session"]["id"], r.json()["chat"]["id"]


def _run(
    backend: Backend,
    account: Account,
    sid: str,
    cid: str,
    created: datetime,
    *,
    model: str = "openai/priced",
    status: str = "completed",
    seconds: float = 2.0,
    cost_nanousd: int | None = 1_500,
    **usage: int | None,
) -> str:
    """A run created at ``created`` and finished ``seconds`` later, as ``_finish`` records it."""
    rid = f"run-{next(_ids)}-{sid}"
    figures: dict[str, Any] = {
        "input_tokens": 100, "output_tokens": 10, "cache_read_tokens": 40,
        "cache_write_tokens": 0, "tool_calls": 2, "subagent_input_tokens": 30,
        "subagent_output_tokens": 3, "subagent_cache_read_tokens": 5,
        "subagent_cache_write_tokens": 0, "subagent_tool_calls": 1,
        "cost_nanousd": cost_nanousd,
        "subagent_cost_nanousd": None if cost_nanousd is None else 500,
        "compaction_input_tokens": 20, "compaction_output_tokens": 2,
        "compaction_cost_nanousd": None if cost_nanousd is None else 250,
        **usage,
    }  # fmt: skip
    with backend.db.write() as s:
        turns.create_run(
            s, id=rid, chat_id=cid, session_id=sid, account_id=account.id, model_id=model,
            assistant_message_id=f"a-{rid}", created_at=created, status="running",
            started_at=created,
        )  # fmt: skip
    if status != "running":
        with backend.db.write() as s:
            finished = created + timedelta(seconds=seconds)
            turns.finish_run(s, rid, status=status, finished_at=finished, **figures)
    return rid


def _usage(client: TestClient, account: Account, **params: str) -> dict[str, Any]:
    r = client.get("/api/usage", params=params, headers=account.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


@pytest.fixture(params=["sqlite", "postgres"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_usage_by_day_model_and_session(
    backend: Backend, client: TestClient, alice: Account, bob: Account
) -> None:
    sid1, cid1 = _session(client, alice)
    sid2, cid2 = _session(client, alice)
    day1_late = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    day2_early = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
    # 00:30 in UTC+1 is still the 1st in UTC: days are UTC days.
    day1_offset = datetime(2026, 3, 2, 0, 30, tzinfo=UTC) - timedelta(hours=1)
    _run(backend, alice, sid1, cid1, day1_late)
    _run(backend, alice, sid1, cid1, day1_offset, seconds=0.25)
    _run(backend, alice, sid2, cid2, day2_early, model="openai/unpriced", cost_nanousd=None)
    _run(backend, alice, sid2, cid2, day2_early, status="running")  # not finished: not counted
    _run(backend, alice, sid1, cid1, datetime(2026, 4, 1, tzinfo=UTC))  # out of range
    _run(backend, bob, *_session(client, bob), day1_late)  # another account's

    by_day = _usage(client, alice, **MARCH, groupBy="day")
    assert by_day["from"] == "2026-03-01T00:00:00Z" and by_day["to"] == "2026-04-01T00:00:00Z"
    assert by_day["groupBy"] == "day"
    assert [(r["key"], r["runs"]) for r in by_day["rows"]] == [
        ("2026-03-01", 2),
        ("2026-03-02", 1),
    ]
    first = by_day["rows"][0]
    assert first == {
        "key": "2026-03-01", "runs": 2, "inputTokens": 200, "outputTokens": 20,
        "cachedInputTokens": 80, "cacheWriteTokens": 0, "toolCalls": 4, "durationMs": 2250,
        "costUsd": 3e-06, "unpricedRuns": 0,
        "subagent": {"inputTokens": 60, "outputTokens": 6, "cachedInputTokens": 10,
                     "cacheWriteTokens": 0, "toolCalls": 2, "costUsd": 1e-06},
        "compaction": {"inputTokens": 40, "outputTokens": 4, "costUsd": 5e-07},
    }  # fmt: skip
    total = by_day["total"]
    assert total["runs"] == 3 and total["inputTokens"] == 300 and total["unpricedRuns"] == 1
    assert total["costUsd"] == 3e-06  # the priced runs' cost; the unpriced one is counted apart

    by_model = _usage(client, alice, **MARCH, groupBy="model")
    rows = {r["key"]: r for r in by_model["rows"]}
    assert set(rows) == {"openai/priced", "openai/unpriced"}
    assert rows["openai/priced"]["costUsd"] == 3e-06
    assert rows["openai/unpriced"]["costUsd"] is None
    assert rows["openai/unpriced"]["subagent"]["costUsd"] is None
    assert rows["openai/unpriced"]["compaction"]["costUsd"] is None
    assert rows["openai/unpriced"]["unpricedRuns"] == 1

    by_session = _usage(client, alice, **MARCH, groupBy="session")
    assert {r["key"]: r["runs"] for r in by_session["rows"]} == {sid1: 2, sid2: 1}

    # A date-time bound is an instant, ``to`` excluded.
    narrow = _usage(client, alice, **{"from": "2026-03-01T23:59:59Z", "to": "2026-03-02T00:00:01Z"})
    assert narrow["total"]["runs"] == 1
    assert _usage(client, alice, **{"from": "2026-03-02", "to": "2026-03-02"})["total"]["runs"] == 1

    # Bob sees his run only; Alice's chat usage is hers.
    assert _usage(client, bob, **MARCH)["total"]["runs"] == 1
    r = client.get(f"/api/sessions/{sid1}/chats/{cid1}/usage", headers=alice.headers)
    assert r.status_code == 200, r.text
    chat = r.json()
    assert chat["chatId"] == cid1 and chat["usage"]["runs"] == 3  # all time: April's too
    assert chat["usage"]["costUsd"] == 4.5e-06
    r = client.get(f"/api/sessions/{sid1}/chats/{cid1}/usage", headers=bob.headers)
    assert r.status_code == 403

    # A session's: all its chats' finished runs, all time, and each chat's.
    r = client.post(f"/api/sessions/{sid1}/chats", json={}, headers=alice.headers)
    assert r.status_code == 200, r.text
    cid3 = r.json()["chat"]["id"]
    _run(backend, alice, sid1, cid3, day2_early, cost_nanousd=None)
    r = client.get(f"/api/sessions/{sid1}/usage", headers=alice.headers)
    assert r.status_code == 200, r.text
    whole = r.json()
    assert whole["sessionId"] == sid1
    assert whole["usage"]["runs"] == 4 and whole["usage"]["unpricedRuns"] == 1
    assert whole["usage"]["costUsd"] == 4.5e-06 and whole["usage"]["inputTokens"] == 400
    by_chat = {c["chatId"]: c["usage"] for c in whole["chats"]}
    assert by_chat == {cid1: chat["usage"], cid3: by_chat[cid3]} and by_chat[cid3]["runs"] == 1
    assert [c["chatId"] for c in whole["chats"]] == sorted(by_chat)
    empty = client.get(f"/api/sessions/{_session(client, alice)[0]}/usage", headers=alice.headers)
    assert empty.json()["usage"]["runs"] == 0 and empty.json()["chats"] == []
    assert client.get(f"/api/sessions/{sid1}/usage", headers=bob.headers).status_code == 403
    r = client.get("/api/sessions/nope/usage", headers=alice.headers)
    assert r.status_code == 404 and r.json()["error"]


def test_days_are_utc_whatever_the_connection_time_zone(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    """PostgreSQL reads a ``timestamptz`` in the connection's zone: the day must not follow it
    (UTC+14 would move a run of 23:00 UTC to the next day)."""
    sid, cid = _session(client, alice)
    _run(backend, alice, sid, cid, datetime(2026, 5, 1, 23, 0, tzinfo=UTC))
    start, end = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 3, tzinfo=UTC)
    with backend.db.read() as s:
        if backend.name == "postgres":
            s.execute(sa.text("SET LOCAL TIME ZONE 'Pacific/Kiritimati'"))
        rows, _ = usage.report(s, alice.id, start, end, "day")
    assert [key for key, _ in rows] == ["2026-05-01"]


def test_the_default_range_is_the_last_30_days(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    sid, cid = _session(client, alice)
    now = datetime.now(UTC)
    _run(backend, alice, sid, cid, now - timedelta(seconds=5))
    _run(backend, alice, sid, cid, now - timedelta(days=40))
    report = _usage(client, alice)
    assert report["total"]["runs"] == 1
    start = datetime.fromisoformat(report["from"])
    assert start == datetime.combine((now - timedelta(days=29)).date(), datetime.min.time(), UTC)
    assert [r["key"] for r in report["rows"]] == [(now - timedelta(seconds=5)).date().isoformat()]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-13-01"}, "Invalid from: expected an ISO date"),
        ({"to": "yesterday"}, "Invalid to: expected an ISO date"),
        ({"groupBy": "week"}, "Invalid groupBy"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "Invalid range: from must be before to"),
        ({"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T10:00:00Z"}, "Invalid range"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "Invalid range: at most 366 days"),
        ({"to": "9999-12-31"}, "Invalid range: out of the representable dates"),
        ({"to": "0001-01-01T00:00:00Z"}, "Invalid range: out of the representable dates"),
    ],
)
def test_bad_parameters_are_400(
    client: TestClient, alice: Account, params: dict[str, str], message: str
) -> None:
    r = client.get("/api/usage", params=params, headers=alice.headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "error" and body["error"].startswith(message), body


def test_migration_0007_fills_in_the_duration_of_finished_runs(
    backend_kind: str, tmp_path: Path
) -> None:
    with make_backend(backend_kind, tmp_path, revision="0005") as old:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        rows: dict[str, list[dict[str, Any]]] = {
            "accounts": [{"id": "a" * 36, "name": "a", "created_at": t0}],
            "sessions": [{
                "id": "s1", "account_id": "a" * 36, "title": "s", "status": "running",
                "is_new_branch": False, "global_skill_refs": [], "sandbox_type": "local",
                "lifecycle_version": 0, "created_at": t0, "updated_at": t0,
                "auto_commit_push": False, "auto_create_pr": False,
            }],
            "chats": [{"account_id": "a" * 36, "id": "c1", "session_id": "s1", "title": "c",
                       "created_at": t0, "updated_at": t0}],
            "chat_runs": [
                {"id": rid, "chat_id": "c1", "session_id": "s1", "account_id": "a" * 36,
                 "model_id": "openai/x", "assistant_message_id": f"m-{rid}", "status": status,
                 "stop_requested": False, "headless": False, "attempts": 1,
                 "input_tokens": 7, "output_tokens": 3, "tool_calls": 0, "steps": 1,
                 "created_at": t0, "started_at": t0, "finished_at": finished}
                for rid, status, finished in [
                    ("done", "completed", t0 + timedelta(seconds=1, milliseconds=250)),
                    ("live", "running", None),
                ]
            ],
        }  # fmt: skip
        with old.db.engine.begin() as conn:
            metadata = sa.MetaData()
            metadata.reflect(conn)
            for name, values in rows.items():
                conn.execute(metadata.tables[name].insert(), values)
        upgrade(old.db, "head")
        with old.db.read() as s:
            got = {r.id: (r.duration_ms, r.cache_read_tokens, r.cost_nanousd)
                   for r in s.scalars(sa.select(ChatRun))}  # fmt: skip
        assert got == {"done": (1250, 0, None), "live": (None, 0, None)}
        with old.db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert list(compare_metadata(context, Base.metadata)) == []
