"""``GET /api/runs`` and a run's reply text: the caller's runs, newest first, filtered by
status, paged by limit and offset (runs recorded straight into the database; the turns that
make them are tested in ``tests/agent/test_runs.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from agent_sessions.store import turns
from agent_sessions.store.models import ChatKey, utcnow
from tests.conftest import Account, Backend


def _runs(client: TestClient, who: Account, **params: Any) -> Any:
    r = client.get("/api/runs", params=params, headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()


def _record(backend: Backend, who: Account, client: TestClient) -> list[str]:
    """Three runs of one chat, oldest first: completed with a two-part reply, failed without
    a reply, running with a partial one."""
    created = client.post("/api/sessions", json={}, headers=who.headers).json()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    now = utcnow()
    statuses = ("completed", "failed", "running")
    runs = [(f"run-{sid}-{i}", status) for i, status in enumerate(statuses)]
    replies = {
        0: [{"type": "step-start"}, {"type": "text", "text": "Looking."},
            {"type": "tool-bash", "toolCallId": "c", "state": "output-available"},
            {"type": "text", "text": "Done."}],
        2: [{"type": "text", "text": "So far"}],
    }  # fmt: skip
    with backend.db.write() as s:
        for i, (run_id, status) in enumerate(runs):
            turns.create_run(
                s, id=run_id, chat_id=cid, session_id=sid, account_id=who.id, status=status,
                model_id="openai/x", assistant_message_id=f"a-{i}",
                created_at=now + timedelta(seconds=i),
            )  # fmt: skip
            if i in replies:
                turns.upsert_message(
                    s, chat=ChatKey(who.id, cid), message_id=f"a-{i}", role="assistant",
                    message={"id": f"a-{i}", "role": "assistant", "parts": replies[i]},
                )  # fmt: skip
    return [run_id for run_id, _ in runs]


def test_the_callers_runs_newest_first_with_their_reply(
    backend: Backend, client: TestClient, alice: Account, bob: Account
) -> None:
    ids = _record(backend, alice, client)
    _record(backend, bob, client)
    out = _runs(client, alice)
    assert [r["runId"] for r in out["runs"]] == ids[::-1]
    assert [r["text"] for r in out["runs"]] == ["So far", None, "Looking.\n\nDone."]
    assert out["pagination"] == {"limit": 50, "offset": 0, "hasMore": False, "nextOffset": None}
    one = client.get(f"/api/chat/runs/{ids[0]}", headers=alice.headers).json()
    assert one == {**out["runs"][2], "text": "Looking.\n\nDone."}

    done = _runs(client, alice, status="completed")["runs"]
    assert [r["runId"] for r in done] == [ids[0]]
    assert _runs(client, alice, status="cancelled")["runs"] == []

    page = _runs(client, alice, limit=2)
    assert [r["runId"] for r in page["runs"]] == [ids[2], ids[1]]
    assert page["pagination"] == {"limit": 2, "offset": 0, "hasMore": True, "nextOffset": 2}
    page = _runs(client, alice, limit=2, offset=2)
    assert [r["runId"] for r in page["runs"]] == [ids[0]]
    assert page["pagination"] == {"limit": 2, "offset": 2, "hasMore": False, "nextOffset": None}


def test_bad_list_parameters_are_400(client: TestClient, alice: Account) -> None:
    for params in ({"status": "bogus"}, {"limit": 0}, {"limit": 101}, {"offset": -1}):
        r = client.get("/api/runs", params=params, headers=alice.headers)
        assert r.status_code == 400 and r.json()["status"] == "error", (params, r.text)
