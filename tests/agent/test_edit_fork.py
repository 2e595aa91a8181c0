"""Edit, retry, fork and persist around real turns: the AI SDK's regenerate, a delete refused
while a turn is live, a fork and a client-persisted reply as the next turn's history."""

from __future__ import annotations

from typing import Any

from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.test_control import Background
from tests.support.model_server import Call, Text, ToolCalls, echo_last_tool_result


def _conversation(h: Agents, sid: str, chat_id: str) -> list[tuple[str, str]]:
    return [(m["role"], m["parts"][-1].get("text", "")) for m in h.chat(sid, chat_id)["messages"]]


def _sent(h: Agents, model: str, index: int = -1) -> list[tuple[str, Any]]:
    """What the model received in its request ``index`` (system prompt aside)."""
    messages = h.model.requests(model.split("/", 1)[1])[index]["messages"]
    return [(m["role"], m["content"]) for m in messages if m["role"] != "system"]


def test_regenerate_replaces_the_last_reply_as_the_ai_sdk_sends_it(agents: AgentsFactory) -> None:
    """``regenerate()`` of the AI SDK's ``useChat``: the messages up to the reply's user message,
    ``trigger: "regenerate-message"`` and the reply's id as ``messageId``. The reply is replaced,
    the earlier exchange stays, and the model sees no trace of the old reply."""
    h = agents()
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    first = h.script([Text("one"), Text("two")])
    h.turn(sid, chat_id, "first question", model=first, message_id="u1")
    h.turn(sid, chat_id, "second question", model=first, message_id="u2")
    stored = h.chat(sid, chat_id)["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    old_reply = stored[3]["id"]

    again = h.script([Text("two, again")])
    body = {"id": chat_id, "sessionId": sid, "messages": stored[:3], "model": again,
            "trigger": "regenerate-message", "messageId": old_reply}  # fmt: skip
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    assert r.status_code == 200, r.text
    h.wait_run(r.headers["x-workflow-run-id"])
    after = h.chat(sid, chat_id)["messages"]
    assert [(m["role"], m["parts"][-1]["text"]) for m in after] == [
        ("user", "first question"), ("assistant", "one"),
        ("user", "second question"), ("assistant", "two, again"),
    ]  # fmt: skip
    assert [m["id"] for m in after[:3]] == [m["id"] for m in stored[:3]]
    assert old_reply not in {m["id"] for m in after}
    assert _sent(h, again) == [
        ("user", "first question"), ("assistant", "one"), ("user", "second question"),
    ]  # fmt: skip


def test_edit_waits_for_the_live_turn_then_retries_from_the_edited_message(
    agents: AgentsFactory,
) -> None:
    """While a turn is live (here: waiting for the user's answer) its chat's messages are not
    deleted, forked from under it or overwritten; once it is stopped, deleting the user message
    and sending the edited one starts over from there."""
    h = agents()
    question = {"question": "Which?", "header": "Pick", "options": [{"label": "A"},
                                                                   {"label": "B"}]}  # fmt: skip
    asking = h.script(
        [ToolCalls([Call("ask_user_question", {"questions": [question]})]), echo_last_tool_result]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    url = f"/api/sessions/{sid}/chats/{chat_id}"
    bg = Background(h, sid, chat_id, "ask me", asking)
    bg.wait_for('"toolName":"ask_user_question","input"')
    user_id = h.chat(sid, chat_id)["messages"][0]["id"]

    r = h.client.delete(f"{url}/messages/{user_id}", headers=h.account.headers)
    assert r.status_code == 409, r.text
    reply = {"id": "client-reply", "role": "assistant", "parts": [{"type": "text", "text": "x"}]}
    r = h.client.post(f"{url}/messages", json=reply, headers=h.account.headers)
    assert r.status_code == 409, r.text
    assert [role for role, _ in _conversation(h, sid, chat_id)] == ["user", "assistant"]
    writing = h.chat(sid, chat_id)["messages"][1]["id"]
    r = h.client.post(f"{url}/fork", json={"messageId": writing}, headers=h.account.headers)
    assert r.status_code == 409, r.text

    stop = h.client.post(f"/api/chat/{chat_id}/stop", headers=h.account.headers)
    assert stop.status_code == 200 and stop.json()["stopped"] is True
    bg.chunks()
    r = h.client.delete(f"{url}/messages/{user_id}", headers=h.account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["deletedMessageIds"][0] == user_id
    assert h.chat(sid, chat_id)["messages"] == []

    edited = h.script([Text("answered directly")])
    h.turn(sid, chat_id, "just answer", model=edited)
    assert _conversation(h, sid, chat_id) == [
        ("user", "just answer"), ("assistant", "answered directly"),
    ]  # fmt: skip
    assert _sent(h, edited) == [("user", "just answer")]


def test_a_fork_and_a_persisted_reply_are_the_next_turns_history(agents: AgentsFactory) -> None:
    """A fork goes on from the copied conversation; a reply the client persists (the web app
    stores the message it built from the stream) is what the next turn sends the model."""
    h = agents()
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    model = h.script([Text("the answer"), Text("from the fork"), Text("after the edit")])
    h.turn(sid, chat_id, "question", model=model)
    reply = h.chat(sid, chat_id)["messages"][1]

    r = h.client.post(
        f"/api/sessions/{sid}/chats/{chat_id}/fork",
        json={"messageId": reply["id"], "id": "forked"},
        headers=h.account.headers,
    )
    assert r.status_code == 200, r.text
    h.turn(sid, "forked", "go on", model=model)
    assert _sent(h, model) == [("user", "question"), ("assistant", "the answer"),
                               ("user", "go on")]  # fmt: skip
    assert [role for role, _ in _conversation(h, sid, chat_id)] == ["user", "assistant"]

    persisted = {**reply, "parts": [*reply["parts"][:-1], {"type": "text", "text": "edited"}]}
    r = h.client.post(
        f"/api/sessions/{sid}/chats/{chat_id}/messages",
        json={"message": persisted},
        headers=h.account.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "updated", r.text
    h.turn(sid, chat_id, "and now?", model=model)
    assert _sent(h, model) == [("user", "question"), ("assistant", "edited"),
                               ("user", "and now?")]  # fmt: skip
