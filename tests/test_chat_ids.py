"""Client-chosen chat ids are scoped to the owning account (ADR 9): another account's chat of
the same id is simply another chat, and nothing tells one account that the other's exists."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from agent_sessions.store.models import Chat
from tests.conftest import Account, Backend


def _session(client: TestClient, account: Account) -> str:
    r = client.post("/api/sessions", json={}, headers=account.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["session"]["id"])


def _chats_url(sid: str, suffix: str = "") -> str:
    return f"/api/sessions/{sid}/chats{suffix}"


def _alices_chat(client: TestClient, alice: Account) -> tuple[str, str]:
    """Alice's session with a chat of a chosen id, renamed and read: state Bob must not see."""
    sid, cid = _session(client, alice), f"plan-{uuid.uuid4().hex[:8]}"
    assert client.post(_chats_url(sid), json={"id": cid}, headers=alice.headers).status_code == 200
    r = client.patch(
        _chats_url(sid, f"/{cid}"), json={"title": "Alice's plan"}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    assert client.post(_chats_url(sid, f"/{cid}/read"), headers=alice.headers).status_code == 200
    return sid, cid


def _chat_rows(backend: Backend, sid: str) -> list[tuple[Any, ...]]:
    with backend.db.read() as s:
        return [tuple(r) for r in s.execute(select(Chat.__table__).where(Chat.session_id == sid))]


def test_another_accounts_chat_id_is_a_chat_of_its_own(
    backend: Backend, client: TestClient, alice: Account, bob: Account
) -> None:
    alice_sid, cid = _alices_chat(client, alice)
    alice_before = client.get(_chats_url(alice_sid, f"/{cid}"), headers=alice.headers).json()
    rows_before = _chat_rows(backend, alice_sid)
    bob_sid = _session(client, bob)

    r = client.post(_chats_url(bob_sid), json={"id": cid}, headers=bob.headers)
    assert r.status_code == 200, r.text
    mine = r.json()["chat"]
    assert (mine["id"], mine["sessionId"], mine["title"]) == (cid, bob_sid, "New chat")
    again = client.post(_chats_url(bob_sid), json={"id": cid}, headers=bob.headers)
    assert again.status_code == 200 and again.json() == r.json()  # idempotent for Bob too

    detail = client.get(_chats_url(bob_sid, f"/{cid}"), headers=bob.headers).json()
    assert detail["chat"] == mine and detail["messages"] == []
    listed = client.get(_chats_url(bob_sid), headers=bob.headers).json()["chats"]
    assert [c["title"] for c in listed if c["id"] == cid] == ["New chat"]
    # Alice's chat is untouched, and still hers alone.
    assert client.get(_chats_url(alice_sid, f"/{cid}"), headers=alice.headers).json() == (
        alice_before
    )
    assert _chat_rows(backend, alice_sid) == rows_before
    assert client.get(_chats_url(alice_sid, f"/{cid}"), headers=bob.headers).status_code == 403
    # Bob's changes stay in Bob's chat.
    r = client.patch(_chats_url(bob_sid, f"/{cid}"), json={"title": "Bob's"}, headers=bob.headers)
    assert r.status_code == 200
    assert client.delete(_chats_url(bob_sid, f"/{cid}"), headers=bob.headers).status_code == 200
    assert _chat_rows(backend, alice_sid) == rows_before


def test_the_chat_id_routes_reach_the_callers_chat_only(
    backend: Backend, client: TestClient, alice: Account, bob: Account
) -> None:
    """``/api/chat/{chatId}/stream`` and ``/stop`` address a chat by id and caller: Bob gets 404
    for Alice's chat (not 403, which says it exists), and his own chat of the same id once he
    has one; Alice's live turn is neither streamed to him nor stopped."""
    alice_sid, cid = _alices_chat(client, alice)
    with backend.db.write() as s:  # Alice's chat has a live turn
        s.execute(
            update(Chat)
            .where(Chat.session_id == alice_sid, Chat.id == cid)
            .values(active_stream_id="run-alices")
        )
    rows_before = _chat_rows(backend, alice_sid)
    not_found = {"status": "error", "error": "Chat not found"}
    r = client.get(f"/api/chat/{cid}/stream", headers=bob.headers)
    assert (r.status_code, r.json()) == (404, not_found)
    r = client.post(f"/api/chat/{cid}/stop", headers=bob.headers)
    assert (r.status_code, r.json()) == (404, not_found)

    bob_sid = _session(client, bob)
    assert (
        client.post(_chats_url(bob_sid), json={"id": cid}, headers=bob.headers).status_code == 200
    )
    assert client.get(f"/api/chat/{cid}/stream", headers=bob.headers).status_code == 204
    r = client.post(f"/api/chat/{cid}/stop", headers=bob.headers)
    assert (r.status_code, r.json()) == (200, {"success": True, "stopped": False})
    assert _chat_rows(backend, alice_sid) == rows_before
