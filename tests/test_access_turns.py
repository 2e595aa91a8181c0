"""The agent-turn routes × {bad credentials, another account, unknown id}: the right code in
the error shape and no change anywhere in the database (same oracle as test_access_matrix)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent_sessions.store import turns
from tests.conftest import Account, Backend, api_app
from tests.test_access_matrix import CREDENTIAL_CASES, fingerprint, world  # noqa: F401

USER_MESSAGE = {"id": "m-1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}

ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/chat", {"id": "{cid}", "sessionId": "{sid}", "messages": [USER_MESSAGE]}),
    ("GET", "/api/chat/{cid}/stream", None),
    ("POST", "/api/chat/{cid}/stop", None),
    ("POST", "/api/chat/runs", {"sessionId": "{sid}", "prompt": "hi"}),
    ("GET", "/api/chat/runs/{rid}", None),
    ("GET", "/api/models", None),
]


@pytest.fixture
def run_world(backend: Backend, world: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    """Alice's session also has a finished run."""
    rid = f"run-{world['sid']}"
    with backend.db.write() as s:
        turns.create_run(
            s, id=rid, chat_id=world["cid"], session_id=world["sid"],
            account_id=world["alice"].id, model_id="openai/x", assistant_message_id="a-1",
        )  # fmt: skip
    return {**world, "rid": rid}


def _call(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str], **ids: str
) -> Any:
    if body is not None:
        body = json.loads(
            json.dumps(body).replace("{sid}", ids["sid"]).replace("{cid}", ids["cid"])
        )
    return client.request(method, path.format(**ids), json=body, headers=headers)


def _ids(w: dict[str, Any], **over: str) -> dict[str, str]:
    return {"sid": w["sid"], "cid": w["cid"], "rid": w["rid"], **over}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("case", list(CREDENTIAL_CASES))
def test_bad_credentials_401(
    backend: Backend, client: TestClient, run_world: dict[str, Any], route: Any, case: str
) -> None:
    before = fingerprint(backend)
    r = _call(client, *route, CREDENTIAL_CASES[case](run_world), **_ids(run_world))
    assert r.status_code == 401, r.text
    assert r.json()["status"] == "error"
    assert fingerprint(backend) == before


@pytest.mark.parametrize("route", [ROUTES[0], ROUTES[3], ROUTES[4]], ids=lambda r: f"{r[0]} {r[1]}")
def test_another_account_is_403(
    backend: Backend, client: TestClient, run_world: dict[str, Any], route: Any
) -> None:
    before = fingerprint(backend)
    bob: Account = run_world["bob"]
    r = _call(client, *route, bob.headers, **_ids(run_world))
    assert r.status_code == 403, r.text
    assert r.json() == {"status": "error", "error": "You do not have access to this session"}
    assert fingerprint(backend) == before


@pytest.mark.parametrize("route", ROUTES[1:3], ids=lambda r: f"{r[0]} {r[1]}")
def test_another_accounts_chat_id_is_404(
    backend: Backend, client: TestClient, run_world: dict[str, Any], route: Any
) -> None:
    """A chat id alone names the caller's chat (ids are per account, ADR 9): Bob has none of
    that id, and is not told that Alice has."""
    before = fingerprint(backend)
    bob: Account = run_world["bob"]
    r = _call(client, *route, bob.headers, **_ids(run_world))
    assert r.status_code == 404, r.text
    assert r.json() == {"status": "error", "error": "Chat not found"}
    assert fingerprint(backend) == before


@pytest.mark.parametrize(
    ("route", "ids", "message"),
    [
        (ROUTES[0], {"sid": "NoSuchSession_1"}, "Session not found"),
        (ROUTES[1], {"cid": "no-such-chat"}, "Chat not found"),
        (ROUTES[2], {"cid": "no-such-chat"}, "Chat not found"),
        (ROUTES[3], {"sid": "NoSuchSession_1"}, "Session not found"),
        (ROUTES[4], {"rid": "run-nope"}, "Run not found"),
    ],
    ids=lambda v: v[1] if isinstance(v, tuple) else None,
)
def test_unknown_ids_are_404(
    backend: Backend,
    client: TestClient,
    run_world: dict[str, Any],
    route: Any,
    ids: dict[str, str],
    message: str,
) -> None:
    before = fingerprint(backend)
    alice: Account = run_world["alice"]
    r = _call(client, *route, alice.headers, **_ids(run_world, **ids))
    assert r.status_code == 404, r.text
    assert r.json() == {"status": "error", "error": message}
    assert fingerprint(backend) == before


def test_another_sessions_chat_id_is_409(
    backend: Backend, client: TestClient, run_world: dict[str, Any]
) -> None:
    before = fingerprint(backend)
    alice: Account = run_world["alice"]
    r = _call(client, *ROUTES[0], alice.headers, **_ids(run_world, cid=run_world["other_cid"]))
    assert r.status_code == 409, r.text
    assert r.json() == {"status": "error", "error": "Chat ID conflict"}
    assert fingerprint(backend) == before


@pytest.mark.parametrize(
    "body",
    [
        {"sessionId": "{sid}", "id": "{cid}", "messages": []},
        {"sessionId": "{sid}", "id": "{cid}"},
        {"id": "{cid}", "messages": [USER_MESSAGE]},
        {"sessionId": "{sid}", "id": "{cid}", "messages": [{"role": "user", "parts": []}]},
        {"sessionId": "{sid}", "id": "{cid}", "messages": [{"role": "user", "parts": "x"}]},
        {"sessionId": "{sid}", "id": "{cid}", "messages": [{"role": "system", "parts": []}]},
        {"sessionId": "{sid}", "id": "bad id", "messages": [USER_MESSAGE]},
        {"sessionId": "{sid}", "id": "{cid}", "messages": [USER_MESSAGE], "model": "nope"},
        {"sessionId": "{sid}", "id": "{cid}", "messages": "hi"},
    ],
)
def test_bad_chat_bodies_are_400(
    backend: Backend, client: TestClient, run_world: dict[str, Any], body: Any
) -> None:
    before = fingerprint(backend)
    alice: Account = run_world["alice"]
    r = _call(client, "POST", "/api/chat", body, alice.headers, **_ids(run_world))
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error"
    assert fingerprint(backend) == before


def test_a_message_id_too_long_to_store_is_400(backend: Backend, run_world: dict[str, Any]) -> None:
    """With a usable model the turn would be accepted: the id must be refused before it is
    stored (PostgreSQL refused it with a 500, SQLite stored it)."""
    alice: Account = run_world["alice"]
    message = {**USER_MESSAGE, "id": "m" * 129}
    body = {"id": run_world["cid"], "sessionId": run_world["sid"], "messages": [message]}
    before = fingerprint(backend)
    with TestClient(api_app(backend, openai_api_key="test"), raise_server_exceptions=False) as c:
        r = c.post("/api/chat", json=body, headers=alice.headers)
    assert (r.status_code, r.json()) == (400, {"status": "error", "error": "Invalid message id"})
    assert fingerprint(backend) == before
