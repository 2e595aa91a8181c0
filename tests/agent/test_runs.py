"""Headless runs as the Recoup API's clients use them, over real HTTP with real turns:
``POST /api/chat/runs`` (202 and ``Location``, unknown keys ignored, acting for a fellow
organization member), the run's reply text, and ``GET /api/runs``."""

from __future__ import annotations

import uuid
from typing import Any

from agent_sessions.store import accounts
from tests.agent.conftest import AgentsFactory
from tests.conftest import make_account
from tests.support.model_server import Text


def _org(h: Any, *members: str) -> str:
    with h.backend.db.write() as s:
        org = accounts.create_organization(s, name=f"org-{uuid.uuid4().hex[:6]}")
        for account_id in members:
            accounts.add_member(s, organization_id=org.id, account_id=account_id)
        return str(org.id)


def _runs(h: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = h.client.get("/api/runs", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_run_for_a_fellow_member(agents: AgentsFactory) -> None:
    h = agents()
    alice, carol, dave = h.account, make_account(h.backend.db), make_account(h.backend.db)
    org = _org(h, alice.id, carol.id)
    other_org = _org(h, alice.id)
    model = h.script([Text("the reply, in full")])
    artist = str(uuid.uuid4())
    body = {
        "prompt": "say it", "model": model, "accountId": carol.id, "organizationId": org,
        "artistId": artist, "topic": "a key this server does not know", "roomId": "x",
    }  # fmt: skip
    r = h.client.post("/api/chat/runs", json=body, headers=alice.headers)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert r.headers["location"] == f"/api/chat/runs/{accepted['runId']}"

    # The caller who acted for carol follows the run where Location says.
    run = h.wait_run(accepted["runId"])
    assert run["status"] == "completed" and run["text"] == "the reply, in full"
    r = h.client.get(r.headers["location"], headers=alice.headers)
    assert r.status_code == 200 and r.json()["runId"] == accepted["runId"]
    r = h.client.get(f"/api/chat/runs/{accepted['runId']}", headers=dave.headers)
    assert r.status_code == 403

    # Carol's run, in carol's session, which records the artist.
    r = h.client.get(f"/api/sessions/{accepted['sessionId']}", headers=carol.headers)
    assert r.status_code == 200 and r.json()["session"]["artistId"] == artist
    r = h.client.get(f"/api/sessions/{accepted['sessionId']}", headers=alice.headers)
    assert r.status_code == 403
    listed = _runs(h, carol.headers)["runs"]
    assert [(x["runId"], x["text"]) for x in listed] == [(accepted["runId"], "the reply, in full")]
    assert _runs(h, alice.headers)["runs"] == []

    # Refused, and nothing started: not a fellow member, or not in the named organization.
    for who, extra in [
        (dave, {"accountId": carol.id}),
        (alice, {"accountId": carol.id, "organizationId": other_org}),
        (alice, {"organizationId": str(uuid.uuid4())}),
        (alice, {"accountId": str(uuid.uuid4())}),
    ]:
        r = h.client.post(
            "/api/chat/runs", json={"prompt": "no", "model": model, **extra}, headers=who.headers
        )
        assert r.status_code == 403, (extra, r.text)
        assert r.json()["status"] == "error"
    assert len(_runs(h, carol.headers)["runs"]) == 1
    assert _runs(h, alice.headers)["runs"] == [] and _runs(h, dave.headers)["runs"] == []
    r = h.client.get("/api/sessions", headers=alice.headers)
    assert r.json()["sessions"] == []


def test_a_run_for_oneself_in_an_organization(agents: AgentsFactory) -> None:
    h = agents()
    org = _org(h, h.account.id)
    model = h.script([Text("mine")])
    body = {"prompt": "go", "model": model, "organizationId": org, "accountId": h.account.id}
    r = h.client.post("/api/chat/runs", json=body, headers=h.account.headers)
    assert r.status_code == 202, r.text
    run = h.wait_run(r.json()["runId"])
    assert run["text"] == "mine"
    assert _runs(h, h.account.headers, status="completed")["runs"][0]["runId"] == run["runId"]
