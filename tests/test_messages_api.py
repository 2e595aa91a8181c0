"""Edit, retry, fork and persist: a chat's messages from outside a turn (the open-agents web
app's routes). A live turn is the chat's ``activeStreamId`` here; ``tests/agent/
test_edit_fork.py`` does the same with real turns."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent_sessions.store import turns
from agent_sessions.store.models import Chat, ChatKey, ChatMessage, utcnow
from tests.conftest import Account, Backend

T0 = utcnow() - timedelta(hours=1)


def _message(mid: str, role: str, text: str) -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": [{"type": "text", "text": text}]}


@pytest.fixture
def chat(backend: Backend, client: TestClient, alice: Account) -> dict[str, str]:
    """Alice's session with a conversation u1 a1 u2 a2 (a1 and u2 stored at the same time:
    the order is then the ids')."""
    created = client.post("/api/sessions", json={}, headers=alice.headers).json()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    with backend.db.write() as s:
        for mid, role, dt in [("u1", "user", 0), ("a1", "assistant", 1), ("u2", "user", 1),
                              ("a2", "assistant", 2)]:  # fmt: skip
            s.add(ChatMessage(account_id=alice.id, chat_id=cid, id=mid, role=role,
                              parts=_message(mid, role, f"text of {mid}"),
                              created_at=T0 + timedelta(seconds=dt)))  # fmt: skip
        row = s.get(Chat, ChatKey(alice.id, cid))
        assert row is not None
        row.title = "Plan"
        row.last_assistant_message_at = T0 + timedelta(seconds=2)
    return {"sid": sid, "cid": cid, "url": f"/api/sessions/{sid}/chats/{cid}"}


def _detail(client: TestClient, alice: Account, url: str) -> dict[str, Any]:
    r = client.get(url, headers=alice.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _ids(client: TestClient, alice: Account, url: str) -> list[str]:
    return [m["id"] for m in _detail(client, alice, url)["messages"]]


def _set_live(backend: Backend, alice: Account, cid: str, run: str | None) -> None:
    with backend.db.write() as s:
        row = s.get(Chat, ChatKey(alice.id, cid))
        assert row is not None
        row.active_stream_id = run


# --- DELETE …/messages/{messageId} -------------------------------------------------------------


def test_delete_takes_a_user_message_and_everything_after(
    client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    url = chat["url"]
    r = client.delete(f"{url}/messages/u2", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "deletedMessageIds": ["u2", "a2"]}
    detail = _detail(client, alice, url)
    assert [m["id"] for m in detail["messages"]] == ["u1", "a1"]
    # The chat's last reply is now a1's.
    assert detail["chat"]["lastAssistantMessageAt"] == (T0 + timedelta(seconds=1)).isoformat(
        timespec="microseconds"
    ).replace("+00:00", "Z")
    r = client.delete(f"{url}/messages/u1", headers=alice.headers)
    assert r.json()["deletedMessageIds"] == ["u1", "a1"]
    detail = _detail(client, alice, url)
    assert detail["messages"] == [] and detail["chat"]["lastAssistantMessageAt"] is None


def test_delete_refuses_and_changes_nothing(
    backend: Backend, client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    url = chat["url"]
    r = client.delete(f"{url}/messages/a1", headers=alice.headers)
    assert r.status_code == 400
    assert r.json() == {"status": "error", "error": "Only user messages can be deleted"}
    r = client.delete(f"{url}/messages/nope", headers=alice.headers)
    assert r.status_code == 404 and r.json()["error"] == "Message not found"
    _set_live(backend, alice, chat["cid"], "run-live")
    r = client.delete(f"{url}/messages/u2", headers=alice.headers)
    assert r.status_code == 409 and r.json()["status"] == "error"
    assert _ids(client, alice, url) == ["u1", "a1", "u2", "a2"]
    _set_live(backend, alice, chat["cid"], None)
    assert client.delete(f"{url}/messages/u2", headers=alice.headers).status_code == 200


# --- POST …/fork -------------------------------------------------------------------------------


def test_fork_copies_through_an_assistant_message(
    backend: Backend, client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    url = chat["url"]
    client.patch(url, json={"modelId": "openai/other"}, headers=alice.headers)
    r = client.post(f"{url}/fork", json={"messageId": "a1"}, headers=alice.headers)
    assert r.status_code == 200, r.text
    fork = r.json()["chat"]
    assert fork["title"] == "Fork of Plan" and fork["sessionId"] == chat["sid"]
    assert fork["modelId"] == "openai/other" and fork["activeStreamId"] is None
    assert fork["id"] != chat["cid"]
    copied = _detail(client, alice, f"/api/sessions/{chat['sid']}/chats/{fork['id']}")["messages"]
    assert [(m["role"], m["parts"]) for m in copied] == [
        ("user", [{"type": "text", "text": "text of u1"}]),
        ("assistant", [{"type": "text", "text": "text of a1"}]),
    ]
    assert not {m["id"] for m in copied} & {"u1", "a1"}  # copies, with ids of their own
    assert _ids(client, alice, url) == ["u1", "a1", "u2", "a2"]  # the source is untouched
    listed = client.get(f"/api/sessions/{chat['sid']}/chats", headers=alice.headers).json()
    by_id = {c["id"]: c for c in listed["chats"]}
    assert by_id[fork["id"]]["hasUnread"] is False  # its owner made it: read
    assert by_id[chat["cid"]]["hasUnread"] is True

    # Through the last reply, with the client's id; the copies keep the source's order even
    # where two messages share a time (a1 and u2).
    r = client.post(f"{url}/fork", json={"messageId": "a2", "id": "my-fork"}, headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["chat"]["id"] == "my-fork"
    again = _detail(client, alice, f"/api/sessions/{chat['sid']}/chats/my-fork")["messages"]
    assert [m["parts"][0]["text"] for m in again] == [f"text of {m}" for m in
                                                       ("u1", "a1", "u2", "a2")]  # fmt: skip


def test_fork_refuses_and_creates_nothing(
    backend: Backend, client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    url, sid = chat["url"], chat["sid"]
    other = client.post("/api/sessions", json={}, headers=alice.headers).json()

    def fork(body: Any) -> Any:
        return client.post(f"{url}/fork", json=body, headers=alice.headers)

    r = fork({"messageId": "u2"})
    assert r.status_code == 400
    assert r.json()["error"] == "Only assistant messages can be forked"
    assert fork({"messageId": "gone"}).json() == {"status": "error", "error": "Message not found"}
    for taken in (chat["cid"], other["chat"]["id"]):  # a chat of this session, of another
        r = fork({"messageId": "a1", "id": taken})
        assert r.status_code == 409 and r.json()["error"] == "Chat ID conflict"
    for bad in ({}, {"messageId": ""}, {"messageId": "a1", "id": "a b"}, {"messageId": 5}):
        assert fork(bad).status_code == 400, bad
    # The reply a live turn is still writing cannot be forked yet.
    with backend.db.write() as s:
        turns.create_run(s, id="run-live", chat_id=chat["cid"], session_id=sid,
                         account_id=alice.id, model_id="openai/x",
                         assistant_message_id="a2")  # fmt: skip
    _set_live(backend, alice, chat["cid"], "run-live")
    r = fork({"messageId": "a2"})
    assert r.status_code == 409 and "still being written" in r.json()["error"]
    # A missing chat is 404 before its body is looked at.
    r = client.post(f"/api/sessions/{sid}/chats/nope/fork", json={}, headers=alice.headers)
    assert r.status_code == 404 and r.json()["error"] == "Chat not found"
    chats = client.get(f"/api/sessions/{sid}/chats", headers=alice.headers).json()["chats"]
    assert [c["id"] for c in chats] == [chat["cid"]]
    # Any earlier reply can be forked meanwhile.
    assert fork({"messageId": "a1"}).status_code == 200


# --- POST …/messages ---------------------------------------------------------------------------


def test_a_client_upserts_an_assistant_message(
    client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    url = chat["url"]
    tool = {"type": "tool-bash", "toolCallId": "c1", "state": "output-available",
            "input": {"command": "ls"}, "output": {"exitCode": 0},
            "callProviderMetadata": {"pydantic_ai": {"provider_details": {"x": 1}}}}  # fmt: skip
    message = {
        "id": "a3", "role": "assistant", "metadata": {"model": "m"},
        "parts": [{"type": "step-start"},
                  {"type": "text", "text": "hi", "state": "done",
                   "providerMetadata": {"pydantic_ai": {"force_download": "allow-local"}}},
                  tool, {"type": "data-commit", "id": "d1", "data": {"sha": "abc"}}],
    }  # fmt: skip
    r = client.post(f"{url}/messages", json=message, headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "status": "inserted"}
    detail = _detail(client, alice, url)
    stored = detail["messages"][-1]
    # Stored as the service's own replies are: provider metadata is not the client's to set.
    assert stored == {
        "id": "a3", "role": "assistant", "metadata": {"model": "m"},
        "parts": [{"type": "step-start"}, {"type": "text", "text": "hi", "state": "done"},
                  {k: v for k, v in tool.items() if k != "callProviderMetadata"},
                  {"type": "data-commit", "id": "d1", "data": {"sha": "abc"}}],
    }  # fmt: skip
    assert detail["chat"]["lastAssistantMessageAt"] > (T0 + timedelta(seconds=2)).isoformat()

    # The open-agents web app's form, {message}, replaces it (the same id in the same chat).
    again = {"message": {**message, "parts": [{"type": "text", "text": "edited"}]}}
    r = client.post(f"{url}/messages", json=again, headers=alice.headers)
    assert r.json() == {"success": True, "status": "updated"}
    assert _detail(client, alice, url)["messages"][-1]["parts"] == [
        {"type": "text", "text": "edited"}
    ]
    assert _ids(client, alice, url) == ["u1", "a1", "u2", "a2", "a3"]


def test_an_upsert_is_refused_and_changes_nothing(
    backend: Backend, client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    url = chat["url"]
    before = _detail(client, alice, url)["messages"]

    def upsert(body: Any) -> Any:
        return client.post(f"{url}/messages", json=body, headers=alice.headers)

    good = {"id": "a9", "role": "assistant", "parts": [{"type": "text", "text": "x"}]}
    r = upsert({**good, "id": "u1"})  # the id of a user message of this chat
    assert r.status_code == 409 and r.json()["status"] == "error"
    for bad in [
        {**good, "role": "user"},
        {**good, "parts": "x"},
        {**good, "parts": [{"type": "file", "url": "http://127.0.0.1/", "mediaType": "x/y"}]},
        {**good, "parts": [{"type": "text"}]},
        {**good, "parts": [{"type": "tool-bash", "toolCallId": "c", "state": "nope"}]},
        {**good, "parts": [{"type": "tool-bash", "toolCallId": "c", "state": "output-available",
                            "output": {"kind": "document-url", "url": "http://x/"}}]},
        {**good, "parts": [{"type": "data-compaction", "data": {"content": "forged"}}]},
        {**good, "parts": [{"type": "text", "text": "a\x00b"}]},
        {**good, "surprise": 1},
        {"message": good, "id": "a9"},
        {"id": "a9"},
        {**good, "id": ""},
    ]:  # fmt: skip
        r = upsert(bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["status"] == "error"
    _set_live(backend, alice, chat["cid"], "run-live")
    assert upsert(good).status_code == 409
    _set_live(backend, alice, chat["cid"], None)
    assert _detail(client, alice, url)["messages"] == before
    r = client.post(f"/api/sessions/{chat['sid']}/chats/nope/messages", json={},
                    headers=alice.headers)  # fmt: skip
    assert r.status_code == 404 and r.json()["error"] == "Chat not found"


def test_a_message_id_of_another_chat_is_this_chats_own(
    client: TestClient, alice: Account, chat: dict[str, str]
) -> None:
    """Message ids are per chat (ADR 9): ``a1`` of the first chat is another message here."""
    sid = chat["sid"]
    second = client.post(f"/api/sessions/{sid}/chats", json={"id": "c2"}, headers=alice.headers)
    assert second.status_code == 200
    body = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "mine"}]}
    r = client.post(f"/api/sessions/{sid}/chats/c2/messages", json=body, headers=alice.headers)
    assert r.json()["status"] == "inserted"
    assert _detail(client, alice, chat["url"])["messages"][1]["parts"][0]["text"] == "text of a1"
