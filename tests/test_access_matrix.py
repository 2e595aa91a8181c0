"""Every route × {no credentials, bad key, revoked key, another account, unknown id}.

Each failing call must answer the right code in the error shape and change nothing: the whole
database is fingerprinted before and after (API2/BOLA of the checklist).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from agent_sessions.store import accounts
from agent_sessions.store.models import ApiKey, Base
from tests.conftest import Account, Backend, make_account


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    body: Any = None

    @property
    def scoped(self) -> bool:
        return "{sid}" in self.path

    @property
    def chat_scoped(self) -> bool:
        return "{cid}" in self.path


ROUTES = [
    Route("POST", "/api/sessions", {"title": "x"}),
    Route("GET", "/api/sessions"),
    Route("GET", "/api/sessions/{sid}"),
    Route("PATCH", "/api/sessions/{sid}", {"title": "changed", "status": "archived"}),
    Route("DELETE", "/api/sessions/{sid}"),
    Route("GET", "/api/sessions/{sid}/chats"),
    Route("POST", "/api/sessions/{sid}/chats", {"id": "new-chat"}),
    Route("GET", "/api/sessions/{sid}/chats/{cid}"),
    Route("PATCH", "/api/sessions/{sid}/chats/{cid}", {"title": "changed"}),
    Route("DELETE", "/api/sessions/{sid}/chats/{cid}"),
    Route("POST", "/api/sessions/{sid}/chats/{cid}/read"),
]


def fingerprint(backend: Backend) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Every row of every table, except the throttled key ``last_used_at``."""
    out = []
    with backend.db.read() as s:
        for table in Base.metadata.sorted_tables:
            cols = [
                c
                for c in table.columns
                if not (table.name == "api_keys" and c.name == "last_used_at")
            ]
            rows = s.execute(select(*cols).order_by(*table.primary_key.columns)).all()
            out.append((table.name, [tuple(r) for r in rows]))
    return out


@pytest.fixture
def world(backend: Backend, client: TestClient) -> dict[str, Any]:
    """Alice owns a session with two chats; Bob exists; a revoked key exists."""
    alice = make_account(backend.db, "alice")
    bob = make_account(backend.db, "bob")
    revoked = make_account(backend.db, "revoked")
    with backend.db.write() as s:
        key_id = s.scalars(select(ApiKey.id).where(ApiKey.account_id == revoked.id)).one()
        accounts.revoke_key(s, key_id)
    created = client.post("/api/sessions", json={}, headers=alice.headers).json()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    client.post(f"/api/sessions/{sid}/chats", json={"id": f"extra-{sid}"}, headers=alice.headers)
    other = client.post("/api/sessions", json={}, headers=alice.headers).json()
    return {
        "alice": alice,
        "bob": bob,
        "revoked": revoked,
        "sid": sid,
        "cid": cid,
        "other_cid": other["chat"]["id"],
    }


def _call(client: TestClient, route: Route, headers: dict[str, str], **ids: str) -> Any:
    path = route.path.format(**ids) if ids else route.path
    return client.request(route.method, path, json=route.body, headers=headers)


CREDENTIAL_CASES = {
    "no-credentials": lambda w: {},
    "bad-key": lambda w: {"x-api-key": "ask_" + "B" * 43},
    "revoked-key": lambda w: {"x-api-key": w["revoked"].key},
    "bad-bearer": lambda w: {"authorization": "Bearer definitely-not-valid"},
}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
@pytest.mark.parametrize("case", list(CREDENTIAL_CASES))
def test_bad_credentials_401_no_side_effect(
    backend: Backend, client: TestClient, world: dict[str, Any], route: Route, case: str
) -> None:
    before = fingerprint(backend)
    r = _call(client, route, CREDENTIAL_CASES[case](world), sid=world["sid"], cid=world["cid"])
    assert r.status_code == 401, r.text
    assert r.json()["status"] == "error"
    assert fingerprint(backend) == before


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.scoped], ids=lambda r: f"{r.method} {r.path}"
)
def test_another_accounts_session_is_403_no_side_effect(
    backend: Backend, client: TestClient, world: dict[str, Any], route: Route
) -> None:
    before = fingerprint(backend)
    bob: Account = world["bob"]
    r = _call(client, route, bob.headers, sid=world["sid"], cid=world["cid"])
    assert r.status_code == 403, r.text
    assert r.json()["status"] == "error"
    assert fingerprint(backend) == before


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.scoped], ids=lambda r: f"{r.method} {r.path}"
)
def test_unknown_session_is_404_no_side_effect(
    backend: Backend, client: TestClient, world: dict[str, Any], route: Route
) -> None:
    before = fingerprint(backend)
    alice: Account = world["alice"]
    r = _call(client, route, alice.headers, sid="NoSuchSession_123456", cid=world["cid"])
    assert r.status_code == 404, r.text
    assert r.json() == {"status": "error", "error": "Session not found"}
    assert fingerprint(backend) == before


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.chat_scoped], ids=lambda r: f"{r.method} {r.path}"
)
@pytest.mark.parametrize("which", ["unknown", "other-session"])
def test_unknown_or_foreign_chat_is_404_no_side_effect(
    backend: Backend, client: TestClient, world: dict[str, Any], route: Route, which: str
) -> None:
    before = fingerprint(backend)
    alice: Account = world["alice"]
    cid = "no-such-chat" if which == "unknown" else world["other_cid"]
    r = _call(client, route, alice.headers, sid=world["sid"], cid=cid)
    assert r.status_code == 404, r.text
    assert r.json() == {"status": "error", "error": "Chat not found"}
    assert fingerprint(backend) == before


def test_fingerprint_sees_changes(
    backend: Backend, client: TestClient, world: dict[str, Any]
) -> None:
    """Guard for the oracle above: a successful call does change the fingerprint."""
    before = fingerprint(backend)
    alice: Account = world["alice"]
    r = client.patch(f"/api/sessions/{world['sid']}", json={"title": "t2"}, headers=alice.headers)
    assert r.status_code == 200
    assert fingerprint(backend) != before
    with backend.db.read() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
