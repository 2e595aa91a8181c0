"""The agent-turn routes beyond the access matrix (``test_access_matrix`` covers credentials,
other accounts and unknown ids on every route): conflicts and bad bodies, answered in the error
shape with no change anywhere in the database (the same oracle)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account, Backend, api_app
from tests.test_access_matrix import fingerprint, world  # noqa: F401

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
def run_world(world: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    """Alice's session with its finished run (``world`` makes one)."""
    return world


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
