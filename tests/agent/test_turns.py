"""Agent turns through ``POST /api/chat``: tools in a real sandbox, the stream, persistence."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import update

from agent_sessions.store.models import SessionRow
from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.protocol import check_protocol, text_of, tool_outputs
from tests.conftest import make_account
from tests.support.model_server import Call, ModelServer, Text, ToolCalls, echo_last_tool_result


def test_multi_step_tool_use_in_a_real_sandbox(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script(
        [
            ToolCalls([Call("write", {"filePath": "app.py", "content": "print('hello')\n"})]),
            ToolCalls(
                [Call("edit", {"filePath": "app.py", "oldString": "hello", "newString": "bye"})]
            ),
            ToolCalls([Call("bash", {"command": "python3 app.py && id -u"})]),
            ToolCalls([Call("read", {"filePath": "/workspace/app.py"})]),
            Text("The script prints bye.", chunks=4),
        ]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    before = h.client.get(f"/api/sessions/{sid}/sandbox", headers=h.account.headers).json()
    chunks, headers = h.turn(sid, chat_id, "make app.py print bye", model=model)
    after = h.client.get(f"/api/sessions/{sid}/sandbox", headers=h.account.headers).json()
    for field in ("lastActivityAt", "hibernateAfter"):  # refreshed by the turn
        assert datetime.fromisoformat(after[field]) > datetime.fromisoformat(before[field])

    check_protocol(chunks)
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    run_id = headers["x-workflow-run-id"]
    outputs = tool_outputs(chunks)
    assert [o["type"] for o in outputs.values()] == ["tool-output-available"] * 4
    bash_out = outputs["call_2_0"]["output"]
    assert bash_out["exitCode"] == 0
    assert bash_out["stdout"].splitlines()[0] == "bye"  # the edit happened in the sandbox
    assert outputs["call_3_0"]["output"].startswith("1: print('bye')")
    assert text_of(chunks) == "The script prints bye."
    assert sum(c["type"] == "start-step" for c in chunks) == 5

    # The model saw each tool's result before its next step.
    requests = h.model.requests(model.split("/", 1)[1])
    assert len(requests) == 5
    last_tool = [m for m in requests[4]["messages"] if m["role"] == "tool"][-1]
    assert "print('bye')" in last_tool["content"]
    system = requests[0]["messages"][0]
    assert system["role"] == "system" and "/workspace" in system["content"]

    # One assistant message per turn, stored as the client built it; the chat is unlocked.
    detail = h.chat(sid, chat_id)
    assert detail["isStreaming"] is False
    assert detail["chat"]["activeStreamId"] is None
    assert detail["chat"]["lastAssistantMessageAt"] is not None
    assert detail["chat"]["title"] == "make app.py print bye"
    roles = [m["role"] for m in detail["messages"]]
    assert roles == ["user", "assistant"]
    assistant = detail["messages"][1]
    assert assistant["id"] == chunks[0]["messageId"]
    kinds = [p["type"] for p in assistant["parts"]]
    assert kinds.count("step-start") == 5
    assert kinds.count("tool-bash") == 1 and kinds[-1] == "text"
    assert assistant["parts"][-1] == {
        "type": "text",
        "text": "The script prints bye.",
        "state": "done",
    }
    assert all(p["state"] == "output-available" for p in assistant["parts"] if "toolCallId" in p)
    assert assistant["metadata"]["usage"]["inputTokens"] > 0

    run = h.run(run_id)
    assert run["status"] == "completed"
    assert run["steps"] == 5 and run["toolCalls"] == 4
    assert run["usage"]["inputTokens"] > 0 and run["usage"]["outputTokens"] > 0
    assert run["finishReason"] == "stop" and run["error"] is None
    assert run["durationMs"] is not None


def test_tool_errors_go_back_to_the_model(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script(
        [
            ToolCalls([Call("read", {"filePath": "missing.txt"})]),
            ToolCalls(
                [Call("edit", {"filePath": "/etc/passwd", "oldString": "a", "newString": "b"})]
            ),
            ToolCalls([Call("bash", {"command": "exit 3"})]),
            echo_last_tool_result,
        ]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "try things", model=model)
    check_protocol(chunks)
    outputs = list(tool_outputs(chunks).values())
    assert outputs[0]["type"] == "tool-output-error"
    assert "missing.txt" in outputs[0]["errorText"]
    assert outputs[1]["type"] == "tool-output-error"
    assert "relative to the workspace" in outputs[1]["errorText"]
    # A failing command is a result, not a tool error: the model reads the exit code.
    assert outputs[2]["type"] == "tool-output-available"
    assert outputs[2]["output"]["exitCode"] == 3
    assert h.run(headers["x-workflow-run-id"])["status"] == "completed"


def test_a_sandbox_that_cannot_be_reached_fails_the_turn_visibly(agents: AgentsFactory) -> None:
    """Not a tool result the model reads and the turn calls a success (issue 17: a process
    that took a turn for a sandbox on another host answered every call "does not exist")."""
    h = agents()
    model = h.script([ToolCalls([Call("bash", {"command": "echo hi"})]), Text("all good")])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    with h.backend.db.write() as s:  # its sandbox now lives on a host that is not this one
        s.execute(
            update(SessionRow).where(SessionRow.id == sid).values(
                sandbox_state={"provider": "local", "name": "elsewhere0000000000000",
                               "host": "host-x"}
            )
        )  # fmt: skip
    chunks, headers = h.turn(sid, chat_id, "run it", model=model)
    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "failed"
    assert "sandbox cannot be reached" in run["error"] and "'host-x'" in run["error"]
    assert [c for c in chunks if c["type"] == "error"], chunks
    assert "all good" not in text_of(chunks)
    assert len(h.model.requests(model.split("/", 1)[1])) == 1  # no step after the call


def test_second_turn_sees_the_history_and_reuses_the_chat(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script([Text("first answer"), Text("second answer")])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    h.turn(sid, chat_id, "one", model=model)
    chunks, _ = h.turn(sid, chat_id, "two", model=model)
    check_protocol(chunks)
    assert text_of(chunks) == "second answer"
    sent: list[dict[str, Any]] = h.model.requests(model.split("/", 1)[1])[-1]["messages"]
    assert [m["role"] for m in sent if m["role"] != "system"] == ["user", "assistant", "user"]
    detail = h.chat(sid, chat_id)
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]


def test_invalid_tool_arguments_are_a_failed_call_the_model_can_retry(
    agents: AgentsFactory,
) -> None:
    h = agents()
    model = h.script(
        [
            ToolCalls([Call("bash", {"cmd": "ls"})]),  # wrong parameter name
            ToolCalls([Call("bash", {"command": "echo fixed"})]),
            Text("done"),
        ]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "go", model=model)
    check_protocol(chunks)
    outputs = tool_outputs(chunks)
    assert outputs["call_0_0"]["type"] == "tool-output-error"
    assert "command" in outputs["call_0_0"]["errorText"]
    assert outputs["call_1_0"]["output"]["stdout"] == "fixed\n"
    assert h.run(headers["x-workflow-run-id"])["status"] == "completed"


def test_regenerate_replaces_the_answer_after_the_user_message(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    first = h.script([Text("first try")])
    body = h.body(sid, chat_id, "question", model=first)
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    assert r.status_code == 200
    h.wait_run(r.headers["x-workflow-run-id"])
    # The AI SDK's regenerate(): the same user message again, trigger regenerate-message.
    second = h.script([Text("second try")])
    again = {**body, "model": second, "trigger": "regenerate-message"}
    r = h.client.post("/api/chat", json=again, headers=h.account.headers)
    assert r.status_code == 200
    h.wait_run(r.headers["x-workflow-run-id"])
    messages = h.chat(sid, chat_id)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["parts"][-1]["text"] == "second try"
    sent = h.model.requests(second.split("/", 1)[1])[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]  # the old answer is gone


def test_message_ids_are_the_chats_own(agents: AgentsFactory) -> None:
    """The README's walk-through message id ``m1`` in a second chat is that chat's own first
    message; resent in its first chat it is still where that conversation continues."""
    h = agents()
    model = h.script([Text("an answer")])
    created = h.new_session()
    sid, first = created["session"]["id"], created["chat"]["id"]
    second = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    assert second.status_code == 200, second.text
    other = second.json()["chat"]["id"]
    h.turn(sid, first, "one", model=model, message_id="m1")
    h.turn(sid, other, "two", model=model, message_id="m1")

    def conversation(chat_id: str) -> list[tuple[str, str, str]]:
        return [
            (m["id"], m["role"], m["parts"][-1]["text"]) for m in h.chat(sid, chat_id)["messages"]
        ]

    (answer_1,) = [m for m, role, _ in conversation(first) if role == "assistant"]
    (answer_2,) = [m for m, role, _ in conversation(other) if role == "assistant"]
    assert conversation(first) == [("m1", "user", "one"), (answer_1, "assistant", "an answer")]
    assert conversation(other) == [("m1", "user", "two"), (answer_2, "assistant", "an answer")]
    sent = h.model.requests(model.split("/", 1)[1])[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]  # nothing of the first chat
    # Resending m1 in the first chat replaces what followed it there, and there only.
    h.turn(sid, first, "one again", model=model, message_id="m1")
    assert [(m, r, t) for m, r, t in conversation(first) if r == "user"] == [
        ("m1", "user", "one again")
    ]
    assert len(conversation(first)) == 2
    assert conversation(other) == [("m1", "user", "two"), (answer_2, "assistant", "an answer")]


def test_another_accounts_chat_id_starts_a_chat_of_its_own(agents: AgentsFactory) -> None:
    """``POST /api/chat`` creates the chat if missing: with the id of another account's chat it
    creates the caller's own (no 409 to say the id is taken), and the turn sees none of the
    other chat's history."""
    alice = agents()
    bob = Agents(alice.client, make_account(alice.backend.db, "bob"), alice.settings,
                 alice.backend, alice.model)  # fmt: skip
    model = alice.script([Text("an answer")])
    created = alice.new_session()
    alice_sid, chat_id = created["session"]["id"], created["chat"]["id"]
    alice.turn(alice_sid, chat_id, "alice's secret", model=model, message_id="m1")
    alices = alice.chat(alice_sid, chat_id)

    bob_sid = bob.new_session()["session"]["id"]
    chunks, _ = bob.turn(bob_sid, chat_id, "bob's question", model=model, message_id="m1")
    check_protocol(chunks)
    sent = alice.model.requests(model.split("/", 1)[1])[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert "alice" not in json.dumps(sent)
    bobs = bob.chat(bob_sid, chat_id)
    assert bobs["chat"]["sessionId"] == bob_sid and bobs["chat"]["title"] == "bob's question"
    assert [(m["id"], m["role"]) for m in bobs["messages"]] == [
        ("m1", "user"), (chunks[0]["messageId"], "assistant")
    ]  # fmt: skip
    assert "alice" not in json.dumps(bobs)
    assert alice.chat(alice_sid, chat_id) == alices


def test_a_tool_step_costs_one_checkpoint_per_model_request(agents: AgentsFactory) -> None:
    """Tool events add no DBOS steps of their own (ADR 7): a turn of three tool calls and an
    answer records four model steps and nothing per event; the outputs still stream."""
    from dbos import DBOS

    h = agents()
    model = h.script([ToolCalls([Call("todo_write", {"todos": []})])] * 3 + [Text("done")])
    created = h.new_session()
    chunks, headers = h.turn(created["session"]["id"], created["chat"]["id"], "plan", model=model)
    check_protocol(chunks)
    assert len(tool_outputs(chunks)) == 3
    names = [s["function_name"] for s in DBOS.list_workflow_steps(headers["x-workflow-run-id"])]
    assert sum(n.endswith("__model.request") for n in names) == 4, names
    assert not [n for n in names if "event" in n], names


def test_a_turn_transforms_each_tool_schema_once(
    agents: AgentsFactory, schema_walks: list[str]
) -> None:
    """The tools' schemas arrive as fresh copies at every step (through the agent and DBOS);
    the model's cache (``CachedToolSchemas``) knows them by content and walks each one once in
    the four requests, not once per request."""
    h = agents()
    model = h.script([ToolCalls([Call("todo_write", {"todos": []})])] * 3 + [Text("done")])
    created = h.new_session()
    chunks, _ = h.turn(created["session"]["id"], created["chat"]["id"], "plan", model=model)
    assert text_of(chunks) == "done"
    assert len(h.model.requests(model.split("/", 1)[1])) == 4
    assert schema_walks and sorted(schema_walks) == sorted(set(schema_walks))  # each tool once


def test_an_anthropic_model_runs_a_turn_with_tools(
    agents: AgentsFactory, model_server: ModelServer
) -> None:
    """``anthropic/*`` end to end: pydantic-ai's Anthropic model and the ``anthropic`` SDK
    against the stand-in's Messages API (streamed events, tool use, tool results)."""
    h = agents(anthropic_api_key="test-key", anthropic_base_url=model_server.anthropic_base_url)
    model = h.script(
        [
            ToolCalls([Call("write", {"filePath": "a.txt", "content": "from claude\n"})]),
            ToolCalls([Call("bash", {"command": "cat a.txt"})]),
            Text("The file says: from claude", chunks=3),
        ],
        provider="anthropic",
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "write and read a file", model=model)
    check_protocol(chunks)
    outputs = tool_outputs(chunks)
    assert list(outputs) == ["toolu_0_0", "toolu_1_0"]
    assert outputs["toolu_1_0"]["output"]["stdout"] == "from claude\n"
    assert text_of(chunks) == "The file says: from claude"
    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "completed" and run["steps"] == 3 and run["toolCalls"] == 2
    assert run["usage"]["inputTokens"] > 0 and run["usage"]["outputTokens"] > 0

    # What reached the stand-in is Anthropic's request shape, history and tool results included.
    requests = h.model.requests(model.split("/", 1)[1])
    assert len(requests) == 3 and all(r.get("stream") for r in requests)
    assert "/workspace" in str(requests[0]["system"])
    assert {t["name"] for t in requests[0]["tools"]} >= {"bash", "read", "write", "edit"}
    assert all("input_schema" in t for t in requests[0]["tools"])
    results = [
        block
        for message in requests[2]["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert [b["tool_use_id"] for b in results] == ["toolu_0_0", "toolu_1_0"]


def test_a_nul_in_tool_output_is_stored_on_both_databases(agents: AgentsFactory) -> None:
    """PostgreSQL's jsonb cannot hold U+0000: a command printing one failed the whole turn
    when its message was saved. Stored JSON carries U+FFFD in its place, on both databases."""
    h = agents()
    model = h.script(
        [ToolCalls([Call("bash", {"command": "printf 'a\\0b'"})]), echo_last_tool_result]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "print a nul", model=model)
    check_protocol(chunks)
    assert h.run(headers["x-workflow-run-id"])["status"] == "completed"
    stored = h.chat(sid, chat_id)["messages"][-1]
    outputs = [p["output"] for p in stored["parts"] if p.get("type") == "tool-bash"]
    assert outputs[0]["stdout"] == "a\ufffdb"
