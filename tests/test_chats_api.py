"""Chats routes as the Sessions API contract describes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent_sessions.store.models import Chat, ChatKey, ChatMessage, utcnow
from tests.conftest import Account, Backend


@pytest.fixture
def session(client: TestClient, alice: Account) -> dict[str, Any]:
    r = client.post("/api/sessions", json={}, headers=alice.headers)
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def _url(session: dict[str, Any], suffix: str = "") -> str:
    return f"/api/sessions/{session['session']['id']}/chats{suffix}"


def test_list_has_initial_chat_and_default_model(
    client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    r = client.get(_url(session), headers=alice.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["defaultModelId"] == "openai/gpt-5.4"
    assert [c["id"] for c in body["chats"]] == [session["chat"]["id"]]
    assert body["chats"][0]["hasUnread"] is False and body["chats"][0]["isStreaming"] is False


def test_create_is_idempotent_and_ordered(
    client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    first = client.post(_url(session), json={"id": "chat-abc"}, headers=alice.headers)
    again = client.post(_url(session), json={"id": "chat-abc"}, headers=alice.headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    generated = client.post(_url(session), headers=alice.headers)
    assert generated.status_code == 200 and generated.json()["chat"]["id"]
    ids = [c["id"] for c in client.get(_url(session), headers=alice.headers).json()["chats"]]
    assert ids == [session["chat"]["id"], "chat-abc", generated.json()["chat"]["id"]]


def test_same_id_in_another_session_conflicts(
    client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    other = client.post("/api/sessions", json={}, headers=alice.headers).json()
    assert (
        client.post(_url(session), json={"id": "shared"}, headers=alice.headers).status_code == 200
    )
    r = client.post(_url(other), json={"id": "shared"}, headers=alice.headers)
    assert r.status_code == 409 and r.json() == {"status": "error", "error": "Chat ID conflict"}
    # and the chat of another session is 404 through this session
    assert client.get(_url(other, "/shared"), headers=alice.headers).status_code == 404


@pytest.mark.parametrize("bad", ["", "   ", 5, [], {"a": 1}, "a/b", "x" * 129, "a b"])
def test_invalid_chat_id(
    client: TestClient, alice: Account, session: dict[str, Any], bad: Any
) -> None:
    r = client.post(_url(session), json={"id": bad}, headers=alice.headers)
    assert r.status_code == 400
    assert r.json() == {"status": "error", "error": "Invalid chat id"}
    assert len(client.get(_url(session), headers=alice.headers).json()["chats"]) == 1


def test_get_returns_messages_in_order(
    backend: Backend, client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    chat_id = session["chat"]["id"]
    t0 = utcnow()
    with backend.db.write() as s:
        for mid, role, dt in [("m2", "assistant", 1), ("m1", "user", 0), ("m0b", "user", 1)]:
            s.add(
                ChatMessage(
                    account_id=alice.id,
                    id=f"{chat_id}-{mid}",
                    chat_id=chat_id,
                    role=role,
                    parts={
                        "id": f"{chat_id}-{mid}",
                        "role": role,
                        "parts": [{"type": "text", "text": mid}],
                        "metadata": {"n": dt},
                    },
                    created_at=t0 + timedelta(seconds=dt),
                )
            )
    r = client.get(_url(session, f"/{chat_id}"), headers=alice.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["isStreaming"] is False and body["chat"]["id"] == chat_id
    assert [m["parts"][0]["text"] for m in body["messages"]] == ["m1", "m0b", "m2"]
    assert body["messages"][2] == {
        "id": f"{chat_id}-m2",
        "role": "assistant",
        "parts": [{"type": "text", "text": "m2"}],
        "metadata": {"n": 1},
    }


def test_patch_trims_and_validates(
    client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    url = _url(session, f"/{session['chat']['id']}")
    r = client.patch(
        url, json={"title": "  Plan  ", "modelId": " anthropic/claude-x "}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["chat"]["title"], r.json()["chat"]["modelId"]) == (
        "Plan",
        "anthropic/claude-x",
    )
    for bad in [
        {},
        {"title": "  "},
        {"modelId": ""},
        {"modelId": "   "},
        {"modelId": 5},
        {"other": 1},
        {"title": 3},
    ]:
        resp = client.patch(url, json=bad, headers=alice.headers)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["status"] == "error"
    assert client.patch(url, headers=alice.headers).status_code == 400
    after = client.get(url, headers=alice.headers).json()["chat"]
    assert (after["title"], after["modelId"]) == ("Plan", "anthropic/claude-x")


def test_delete_refuses_the_only_chat(
    client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    only = _url(session, f"/{session['chat']['id']}")
    r = client.delete(only, headers=alice.headers)
    assert r.status_code == 400 and r.json()["status"] == "error"
    client.post(_url(session), json={"id": "second"}, headers=alice.headers)
    assert client.delete(only, headers=alice.headers).json() == {"success": True}
    assert client.get(only, headers=alice.headers).status_code == 404
    assert client.delete(_url(session, "/second"), headers=alice.headers).status_code == 400


def test_unread_follows_assistant_messages_and_reads(
    backend: Backend, client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    chat_id = session["chat"]["id"]

    def unread() -> bool:
        chats = client.get(_url(session), headers=alice.headers).json()["chats"]
        return bool(chats[0]["hasUnread"])

    def assistant_replies() -> None:
        with backend.db.write() as s:
            chat = s.get(Chat, ChatKey(alice.id, chat_id))
            assert chat is not None
            chat.last_assistant_message_at = utcnow()

    assert unread() is False
    assistant_replies()
    assert unread() is True
    r = client.post(_url(session, f"/{chat_id}/read"), headers=alice.headers)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert unread() is False
    assistant_replies()
    assert unread() is True
    assert client.post(_url(session, "/nope/read"), headers=alice.headers).status_code == 404


def test_patch_takes_any_model_id_and_finds_the_chat_before_the_body(
    client: TestClient, alice: Account, session: dict[str, Any]
) -> None:
    """The reference clients' model ids need not be ``provider/name`` (a gateway's own ids): a
    non-empty string is stored, a turn checks it. A missing chat is 404 whatever the body."""
    url = _url(session, f"/{session['chat']['id']}")
    r = client.patch(url, json={"modelId": "kimi-k3"}, headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["chat"]["modelId"] == "kimi-k3"
    for body in [{"modelId": ""}, {}, {"other": 1}, None]:
        r = client.patch(_url(session, "/no-such-chat"), json=body, headers=alice.headers)
        assert r.status_code == 404, (body, r.text)
        assert r.json() == {"status": "error", "error": "Chat not found"}
    r = client.patch(
        "/api/sessions/NoSuchSession_123456/chats/x", json={"title": ""}, headers=alice.headers
    )
    assert r.status_code == 404 and r.json()["error"] == "Session not found"
