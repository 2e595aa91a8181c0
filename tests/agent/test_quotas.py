"""Per-account limits on turns and fair starts of waiting turns, with real DBOS and sandboxes.

A turn is held running by a bash command that waits for a file the test creates in the
sandbox's workspace: the turns behind it stay queued exactly as long as the test needs.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import Agents, AgentsFactory
from tests.conftest import make_account
from tests.support.model_server import Call, Text, ToolCalls

GATE = "until [ -e go ]; do sleep 0.05; done; echo open"


def _gate(h: Agents, sid: str) -> Path:
    """The file that lets the gated turn of session ``sid`` go on, seen from the host."""
    return h.settings.data_dir / "sandboxes" / sid / "workspace" / "go"


def _headless(h: Agents, sid: str | None, model: str) -> httpx.Response:
    body: dict[str, Any] = {"prompt": "go", "model": model}
    if sid is not None:
        body["sessionId"] = sid
    return h.client.post("/api/chat/runs", json=body, headers=h.account.headers)


def _run_id(h: Agents, sid: str, model: str) -> str:
    r = _headless(h, sid, model)
    assert r.status_code == 202, r.text
    return str(r.json()["runId"])


def _wait_running(h: Agents, run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (status := h.run(run_id)["status"]) != "running":
        assert status == "queued", status
        assert time.monotonic() < deadline, f"{run_id} never started"
        time.sleep(0.05)


def _started(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["startedAt"])


@pytest.mark.parametrize(
    ("limit", "backlog"),
    [({"agent_worker_concurrency": 1}, 4), ({"agent_global_concurrency": 1}, 14)],
    ids=["in-process", "global-queue"],
)
def test_another_accounts_turn_starts_before_the_backlog(
    agents: AgentsFactory, limit: dict[str, int], backlog: int
) -> None:
    """Account A holds the only slot and has a backlog waiting; B's one turn, sent last, must
    not wait for all of it (first come, first served ran it last).

    In process the next free slot goes to the account that started a turn least recently,
    so B's turn is the very next. Through the global queue DBOS takes the accounts with
    waiting turns in random order at each poll: B's turn is next with probability 1/2 at each
    free slot, and last of all only with probability 2**-14. (Within an account the queue
    keeps the order of DBOS's enqueue time, which it stores to the second on SQLite.)
    """
    h = agents(**limit)
    bob = replace(h, account=make_account(h.backend.db, "bob"))
    sid_a = h.new_session()["session"]["id"]
    sid_b = bob.new_session()["session"]["id"]
    gated = h.script([ToolCalls([Call("bash", {"command": GATE})]), Text("held")])
    quick = h.script([Text("done")])

    holder = _run_id(h, sid_a, gated)
    _wait_running(h, holder)
    waiting = [_run_id(h, sid_a, quick) for _ in range(backlog)]
    newcomer = _run_id(bob, sid_b, quick)
    assert {h.run(r)["status"] for r in waiting} == {"queued"}
    assert bob.run(newcomer)["status"] == "queued"
    _gate(h, sid_a).touch()

    runs = {r: h.wait_run(r, timeout=120) for r in [holder, *waiting]}
    runs[newcomer] = bob.wait_run(newcomer, timeout=120)
    assert {r["status"] for r in runs.values()} == {"completed"}
    order = sorted(runs, key=lambda r: _started(runs[r]))
    assert order[0] == holder
    if "agent_worker_concurrency" in limit:
        assert order[1] == newcomer, [runs[r]["startedAt"] for r in order]
        assert order[2:] == waiting  # each account's own turns in the order they came
    else:
        assert order.index(newcomer) < len(order) - 1, "B's turn started after A's backlog"


def test_turns_past_the_account_limit_are_refused_exactly(agents: AgentsFactory) -> None:
    """Queued and running turns count; of eight turns sent at once exactly the room left is
    accepted, the rest get 429 with Retry-After and leave nothing behind (no chat, no
    session, no run)."""
    h = agents(account_max_turns=3, agent_worker_concurrency=1)
    sid = h.new_session()["session"]["id"]
    gated = h.script([ToolCalls([Call("bash", {"command": GATE})]), Text("held")])
    quick = h.script([Text("done")])
    holder = _run_id(h, sid, gated)
    _wait_running(h, holder)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: _headless(h, sid, quick), range(8)))
    assert sorted(r.status_code for r in responses) == [202] * 2 + [429] * 6
    for r in responses:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "5"
            body = r.json()
            assert body["status"] == "error"
            assert "AGENT_SESSIONS_ACCOUNT_MAX_TURNS" in body["error"], body
    accepted = [r.json()["runId"] for r in responses if r.status_code == 202]

    # A headless run that would make its own session, and a streamed turn: refused too.
    r = _headless(h, None, quick)
    assert r.status_code == 429, r.text
    chat_id = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    body = h.body(sid, chat_id.json()["chat"]["id"], "hi", model=quick)
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "5"
    listing = h.client.get("/api/sessions", headers=h.account.headers).json()
    assert [s["id"] for s in listing["sessions"]] == [sid]
    chats = h.client.get(f"/api/sessions/{sid}/chats", headers=h.account.headers).json()
    # the first chat, the three accepted turns' chats and the one made for POST /api/chat
    assert len(chats["chats"]) == 5
    assert [m["role"] for m in h.chat(sid, chat_id.json()["chat"]["id"])["messages"]] == []

    _gate(h, sid).touch()
    for run_id in [holder, *accepted]:
        assert h.wait_run(run_id, timeout=120)["status"] == "completed"
    assert _headless(h, sid, quick).status_code == 202  # room again


def test_a_turn_that_would_resume_a_sandbox_past_the_limit_is_refused(
    agents: AgentsFactory,
) -> None:
    """A turn on a hibernated session resumes its sandbox: at the account's limit of live
    sandboxes it is refused up front, like an explicit resume."""
    h = agents(account_max_live_sandboxes=1)
    first = h.new_session()
    sid = first["session"]["id"]
    r = h.client.post(f"/api/sessions/{sid}/sandbox/hibernate", headers=h.account.headers)
    assert r.status_code == 200 and r.json()["lifecycleState"] == "hibernated", r.text
    other = h.new_session()["session"]["id"]  # the one live sandbox the account may have
    quick = h.script([Text("done")])

    r = h.client.post(
        "/api/chat", json=h.body(sid, first["chat"]["id"], "hi", model=quick),
        headers=h.account.headers,
    )  # fmt: skip
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "30"
    assert "AGENT_SESSIONS_ACCOUNT_MAX_LIVE_SANDBOXES" in r.json()["error"]
    r = h.client.post(f"/api/sessions/{sid}/sandbox/resume", headers=h.account.headers)
    assert r.status_code == 429, r.text
    state = h.client.get(f"/api/sessions/{sid}/sandbox", headers=h.account.headers).json()
    assert state["lifecycleState"] == "hibernated"

    r = h.client.patch(
        f"/api/sessions/{other}", json={"status": "archived"}, headers=h.account.headers
    )
    assert r.status_code == 200, r.text
    chunks, _ = h.turn(sid, first["chat"]["id"], "hi", model=quick)
    assert chunks[-1]["type"] == "finish"
    state = h.client.get(f"/api/sessions/{sid}/sandbox", headers=h.account.headers).json()
    assert state["lifecycleState"] == "active"
