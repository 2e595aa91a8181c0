"""A hibernated sandbox restored by a turn, the client tool ``ask_user_question``, subagents."""

from __future__ import annotations

from typing import Any

from tests.agent.conftest import AgentsFactory, parse_sse
from tests.agent.protocol import check_protocol, text_of, tool_outputs
from tests.agent.test_control import Background
from tests.support.model_server import (
    Call,
    Step,
    Text,
    ToolCalls,
    echo_last_tool_result,
    prompt_tokens_of,
)


def test_a_turn_restores_a_hibernated_sandbox_first(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    write = h.script([ToolCalls([Call("write", {"filePath": "kept.txt", "content": "still here"})]),
                      Text("saved")])  # fmt: skip
    h.turn(sid, chat_id, "save", model=write)
    r = h.client.post(f"/api/sessions/{sid}/sandbox/hibernate", headers=h.account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["lifecycleState"] == "hibernated"

    chat2 = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    read = h.script([ToolCalls([Call("read", {"filePath": "kept.txt"})]), Text("read it")])
    chunks, _ = h.turn(sid, chat2.json()["chat"]["id"], "read", model=read)
    check_protocol(chunks)
    sandbox = [c for c in chunks if c["type"] == "data-sandbox"]
    assert [c["data"]["state"] for c in sandbox] == ["restoring", "active"]
    first_step = next(i for i, c in enumerate(chunks) if c["type"] == "start-step")
    assert chunks.index(sandbox[-1]) < first_step  # restored before the agent started
    assert tool_outputs(chunks)["call_0_0"]["output"].startswith("1: still here")
    state = h.client.get(f"/api/sessions/{sid}/sandbox", headers=h.account.headers).json()
    assert state["lifecycleState"] == "active"


def _asking_turn(h: Any, question: dict[str, Any]) -> tuple[Background, str, str]:
    """A turn (in the background) whose agent asks ``question`` and then echoes the answer;
    returns once the question is in the stream: the reader, session id and chat id."""
    model = h.script(
        [ToolCalls([Call("ask_user_question", {"questions": [question]})]), echo_last_tool_result]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    bg = Background(h, sid, chat_id, "ask me", model)
    bg.wait_for('"toolName":"ask_user_question","input"')
    return bg, sid, chat_id


def _answer_body(sid: str, chat_id: str, question: dict[str, Any], answers: Any) -> Any:
    """What the AI SDK sends back: the assistant message with the tool's output filled in."""
    part = {
        "type": "tool-ask_user_question", "toolCallId": "call_0_0", "state": "output-available",
        "input": {"questions": [question]}, "output": {"answers": answers},
    }  # fmt: skip
    assistant = {"id": "whatever", "role": "assistant", "parts": [part]}
    return {"id": chat_id, "sessionId": sid, "messages": [assistant],
            "trigger": "submit-tool-result"}  # fmt: skip


def test_ask_user_question_waits_for_the_answer(agents: AgentsFactory) -> None:
    """The response ends at the question (``finish``, reason ``tool-calls``) while the turn
    waits durably, so that the AI SDK client, no longer streaming, sends the answer; the
    answer's response continues the same assistant message (ADR 14)."""
    h = agents()
    question = {
        "question": "Which language?",
        "header": "Language",
        "options": [{"label": "Python"}, {"label": "Go"}],
    }
    bg, sid, chat_id = _asking_turn(h, question)
    chunks = bg.chunks()
    assert chunks[-1] == {"type": "finish", "finishReason": "tool-calls"}
    assert chunks[-2]["type"] == "tool-input-available"
    run = h.run(bg.headers["x-workflow-run-id"])
    assert run["status"] == "running"  # waiting, durably, for the client
    # Resuming the stream ends at the same place while the question waits.
    with h.client.stream("GET", f"/api/chat/{chat_id}/stream", headers=h.account.headers) as r:
        assert parse_sse(r.read().decode()) == chunks

    body = _answer_body(sid, chat_id, question, {"Which language?": "Go"})
    with h.client.stream("POST", "/api/chat", json=body, headers=h.account.headers) as r:
        assert r.status_code == 200
        continued = parse_sse(r.read().decode())
    assert continued[0] == {"type": "start", "messageId": chunks[0]["messageId"]}
    assert continued[-1]["type"] == "finish" and continued[-1]["finishReason"] == "stop"
    kinds = [c["type"] for c in continued]
    assert "tool-input-start" not in kinds and "tool-output-available" in kinds
    check_protocol(chunks[:-1] + continued[1:])
    assert tool_outputs(continued)["call_0_0"]["output"] == {"answers": {"Which language?": "Go"}}
    assert "Go" in text_of(continued)
    assert h.wait_run(run["runId"])["status"] == "completed"

    # No turn waits any more: another tool result is refused.
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    assert r.status_code == 409


def requests_of_subagent(h: Any, model: str) -> list[dict[str, Any]]:
    return [
        r
        for r in h.model.requests(model.split("/", 1)[1])
        if r["messages"][0]["content"].startswith("You are a subagent")
    ]


def test_an_explorer_subagent_only_reads(agents: AgentsFactory) -> None:
    h = agents()

    def step0(request: dict[str, Any]) -> Step:
        if request["messages"][0]["content"].startswith("You are a subagent"):
            return Text("Summary: looked. Answer: nothing to change")
        return ToolCalls([Call("task", {"task": "look around", "subagentType": "explorer"})])

    model = h.script([step0, echo_last_tool_result])
    created = h.new_session()
    h.turn(created["session"]["id"], created["chat"]["id"], "explore", model=model)
    offered = {t["function"]["name"] for t in requests_of_subagent(h, model)[0]["tools"]}
    assert {"read", "grep", "glob", "bash"} <= offered
    assert not offered & {"write", "edit", "ask_user_question", "task"}


def test_task_runs_a_subagent_and_returns_only_its_answer(agents: AgentsFactory) -> None:
    h = agents()

    def step0(request: dict[str, Any]) -> Step:
        system = request["messages"][0]["content"]
        if system.startswith("You are a subagent"):  # the subagent: it works, then answers
            return ToolCalls([Call("bash", {"command": "echo 41 > sub.txt"})])
        return ToolCalls(
            [Call("task", {"task": "write 41 to sub.txt", "subagentType": "executor"})]
        )

    def step1(request: dict[str, Any]) -> Step:
        system = request["messages"][0]["content"]
        if system.startswith("You are a subagent"):
            return Text("Summary: wrote the file. Answer: 41")
        return echo_last_tool_result(request)

    model = h.script([step0, step1])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "delegate", model=model)
    check_protocol(chunks)
    outputs = tool_outputs(chunks)
    assert list(outputs) == ["call_0_0"]  # the subagent's own tool calls are not streamed
    assert outputs["call_0_0"]["output"] == "Summary: wrote the file. Answer: 41"
    # An executor subagent may change files, and is offered no client tool.
    sub_tools = {t["function"]["name"] for t in requests_of_subagent(h, model)[0]["tools"]}
    assert {"write", "edit", "bash"} <= sub_tools and "ask_user_question" not in sub_tools
    # The run's tokens are the sum over every request, the subagent's two included.
    requests = h.model.requests(model.split("/", 1)[1])
    assert len(requests) == 4
    expected = sum(prompt_tokens_of(r["messages"]) for r in requests)
    assert h.run(headers["x-workflow-run-id"])["usage"]["inputTokens"] == expected
    check = h.script([ToolCalls([Call("read", {"filePath": "sub.txt"})]), Text(".")])
    chat2 = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    more, _ = h.turn(sid, chat2.json()["chat"]["id"], "check", model=check)
    assert tool_outputs(more)["call_0_0"]["output"].startswith("1: 41")


def test_a_turn_waiting_for_the_user_holds_no_worker_slot(agents: AgentsFactory) -> None:
    """With room for one turn, a turn waiting on ``ask_user_question`` lets another chat's turn
    run meanwhile; the answer then finishes the first."""
    h = agents(agent_worker_concurrency=1)
    question = {"question": "Go on?", "options": [{"label": "Yes"}, {"label": "No"}]}
    bg, sid, chat_a = _asking_turn(h, question)
    run_a = bg.headers["x-workflow-run-id"]

    chat_b = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    other = Background(h, sid, chat_b.json()["chat"]["id"], "hi", h.script([Text("meanwhile")]))
    assert text_of(other.chunks()) == "meanwhile"  # not queued behind the open question
    assert h.run(run_a)["status"] == "running"

    body = _answer_body(sid, chat_a, question, {"Go on?": "Yes"})
    assert bg.chunks()[-1] == {"type": "finish", "finishReason": "tool-calls"}
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    assert r.status_code == 200
    assert "Yes" in text_of(parse_sse(r.text))
    assert h.wait_run(run_a)["status"] == "completed"
