"""Tool calls waiting for a person's approval (ADR 14), end to end with the stand-in model.

The wire is the AI SDK v6's: a ``tool-approval-request`` chunk, the response ending there
(``finish``, reason ``tool-calls``) while the turn waits durably, and the assistant message
posted back with the tool part in ``approval-responded``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import Agents, AgentsFactory, parse_sse
from tests.agent.protocol import check_protocol, text_of, tool_outputs
from tests.agent.test_control import Background
from tests.conftest import Backend, make_account, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import Call, ModelServer, Text, ToolCalls, echo_last_tool_result
from tests.support.served_sessions import new_active_session

RULES = [{"tool": "bash", "match": {"command": "rm -rf|git push"}}]
RISKY = "echo x > gone.txt && rm -rf gone.txt && echo removed"


def _held_turn(h: Agents, *calls: Call) -> tuple[str, str, str, list[dict[str, Any]]]:
    """A turn whose model makes ``calls`` and then echoes the last tool result; returns once
    its response has ended at the approval request: session, chat, run ids and the chunks."""
    model = h.script([ToolCalls(list(calls)), echo_last_tool_result])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "clean up", model=model)
    return sid, chat_id, headers["x-workflow-run-id"], chunks


def _answer(
    h: Agents, sid: str, chat_id: str, approved: bool, reason: str | None = None
) -> tuple[int, list[dict[str, Any]] | str]:
    """What the AI SDK client posts after ``addToolApprovalResponse``: the conversation, its
    last message the assistant's with the waiting part in ``approval-responded``."""
    messages = h.chat(sid, chat_id)["messages"]
    assistant = messages[-1]
    for part in assistant["parts"]:
        if part.get("state") == "approval-requested":
            part["state"] = "approval-responded"
            part["approval"] = {**part["approval"], "approved": approved}
            if reason is not None:
                part["approval"]["reason"] = reason
    body = {"id": chat_id, "sessionId": sid, "messages": messages,
            "trigger": "submit-message", "messageId": assistant["id"]}  # fmt: skip
    with h.client.stream("POST", "/api/chat", json=body, headers=h.account.headers) as r:
        raw = r.read().decode()
        return r.status_code, (parse_sse(raw) if r.status_code == 200 else raw)


def _tool_parts(h: Agents, sid: str, chat_id: str) -> dict[str, dict[str, Any]]:
    parts = h.chat(sid, chat_id)["messages"][-1]["parts"]
    return {p["toolCallId"]: p for p in parts if "toolCallId" in p}


def test_a_matching_call_waits_and_runs_once_approved(agents: AgentsFactory) -> None:
    h = agents(approval_rules=RULES)
    sid, chat_id, run_id, chunks = _held_turn(
        h, Call("bash", {"command": RISKY}), Call("bash", {"command": "echo fine"})
    )
    check_protocol(chunks)
    # The call that needs no approval ran; the other is announced and waits.
    assert tool_outputs(chunks)["call_0_1"]["output"]["stdout"] == "fine\n"
    asked = [c for c in chunks if c["type"] == "tool-approval-request"]
    assert asked == [
        {"type": "tool-approval-request", "approvalId": "call_0_0", "toolCallId": "call_0_0"}
    ]
    assert chunks[-1] == {"type": "finish", "finishReason": "tool-calls"}
    assert h.run(run_id)["status"] == "running"  # the turn goes on, waiting

    pending = [{"approvalId": "call_0_0", "toolCallId": "call_0_0", "toolName": "bash",
                "input": {"command": RISKY}}]  # fmt: skip
    detail = h.chat(sid, chat_id)
    assert detail["pendingApprovals"] == pending and detail["pendingQuestions"] == []
    listed = h.client.get(f"/api/sessions/{sid}/chats", headers=h.account.headers).json()
    assert listed["chats"][0]["pendingApprovals"] == pending
    part = _tool_parts(h, sid, chat_id)["call_0_0"]
    assert part["state"] == "approval-requested" and part["approval"] == {"id": "call_0_0"}
    # Resuming the stream ends at the same place while the approval waits.
    with h.client.stream(
        "GET", f"/api/chat/{chat_id}/stream", headers=h.account.headers
    ) as resumed:
        assert parse_sse(resumed.read().decode()) == chunks

    status, continued = _answer(h, sid, chat_id, approved=True)
    assert status == 200, continued
    assert isinstance(continued, list)
    assert continued[0] == {"type": "start", "messageId": chunks[0]["messageId"]}
    assert continued[-1]["type"] == "finish" and continued[-1].get("finishReason") == "stop"
    assert tool_outputs(continued)["call_0_0"]["output"]["stdout"] == "removed\n"
    assert h.wait_run(run_id)["status"] == "completed"
    part = _tool_parts(h, sid, chat_id)["call_0_0"]
    assert part["state"] == "output-available"
    assert part["approval"] == {"id": "call_0_0", "approved": True}
    assert h.chat(sid, chat_id)["pendingApprovals"] == []
    # The model's next request held both results, in the order of its calls.
    name = part_model(h, sid, chat_id)
    tool_messages = [m for m in h.model.requests(name)[-1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0_0", "call_0_1"]
    assert "removed" in tool_messages[0]["content"]

    # Nothing waits any more: the same answer again is refused.
    status, _ = _answer_again(h, sid, chat_id)
    assert status == 409


def part_model(h: Agents, sid: str, chat_id: str) -> str:
    return str(h.chat(sid, chat_id)["messages"][-1]["metadata"]["model"]).split("/", 1)[1]


def _answer_again(h: Agents, sid: str, chat_id: str) -> tuple[int, str]:
    messages = h.chat(sid, chat_id)["messages"]
    approval = {"id": "call_0_0", "approved": True}
    part = {"type": "tool-bash", "toolCallId": "call_0_0", "state": "approval-responded",
            "input": {"command": RISKY}, "approval": approval}  # fmt: skip
    assistant = {"id": messages[-1]["id"], "role": "assistant", "parts": [part]}
    body = {"id": chat_id, "sessionId": sid, "messages": [assistant]}
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    return r.status_code, r.text


def test_a_denial_sends_the_reason_to_the_model(agents: AgentsFactory) -> None:
    h = agents(approval_rules=RULES)
    traced = "echo ran > trace.txt && rm -rf nothing"
    sid, chat_id, run_id, _ = _held_turn(h, Call("bash", {"command": traced}))
    status, continued = _answer(h, sid, chat_id, approved=False, reason="not on a Friday")
    assert status == 200, continued
    assert isinstance(continued, list)
    assert {"type": "tool-output-denied", "toolCallId": "call_0_0"} in continued
    assert text_of(continued) == "The user denied this call: not on a Friday"
    assert h.wait_run(run_id)["status"] == "completed"
    part = _tool_parts(h, sid, chat_id)["call_0_0"]
    assert part["state"] == "output-denied"
    assert part["approval"] == {"id": "call_0_0", "approved": False, "reason": "not on a Friday"}
    # The command never ran.
    check = h.script([ToolCalls([Call("bash", {"command": "ls -a"})]), echo_last_tool_result])
    other = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    chunks, _ = h.turn(sid, other.json()["chat"]["id"], "what is there?", model=check)
    listing = tool_outputs(chunks)["call_0_0"]["output"]["stdout"].split()
    assert ".git" in listing and "trace.txt" not in listing
    # A later turn's model reads the denial as the first one did.
    later = h.script([Text("understood")])
    h.turn(sid, chat_id, "fine", model=later)
    history = h.model.requests(later.split("/", 1)[1])[0]["messages"]
    denied = [m for m in history if m["role"] == "tool" and m["tool_call_id"] == "call_0_0"]
    assert denied[0]["content"] == "The user denied this call: not on a Friday"


def test_a_chat_adds_rules_and_a_bad_pattern_is_refused(agents: AgentsFactory) -> None:
    h = agents()  # no operator rules
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    url = f"/api/sessions/{sid}/chats/{chat_id}"
    bad = h.client.patch(
        url, json={"approvalRules": [{"tool": "bash", "match": {"command": "rm (-rf"}}]},
        headers=h.account.headers,
    )  # fmt: skip
    assert bad.status_code == 400, bad.text
    assert "invalid regular expression for 'command'" in bad.text
    assert h.chat(sid, chat_id)["chat"]["approvalRules"] == []
    for wrong in ([{"tool": "", "match": {}}], [{"tool": "bash", "extra": 1}], "bash"):
        r = h.client.patch(url, json={"approvalRules": wrong}, headers=h.account.headers)
        assert r.status_code == 400, (wrong, r.text)

    every = h.client.patch(
        url, json={"approvalRules": [{"tool": "bash"}]}, headers=h.account.headers
    )
    assert every.status_code == 200, every.text  # no "match": every call (once a 500)
    assert every.json()["chat"]["approvalRules"] == [{"tool": "bash", "match": {}}]

    rules = [{"tool": "read", "match": {"filePath": r"(^|/)\.env"}}]
    r = h.client.patch(url, json={"approvalRules": rules}, headers=h.account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["chat"]["approvalRules"] == rules
    model = h.script([ToolCalls([Call("read", {"filePath": ".env.local"})]), Text("done")])
    chunks, _ = h.turn(sid, chat_id, "read the env", model=model)
    assert [c["type"] for c in chunks][-2:] == ["finish-step", "finish"]
    assert h.chat(sid, chat_id)["pendingApprovals"][0]["toolName"] == "read"
    status, continued = _answer(h, sid, chat_id, approved=False)
    assert status == 200 and isinstance(continued, list)
    assert {"type": "tool-output-denied", "toolCallId": "call_0_0"} in continued


def test_no_one_to_ask_in_a_headless_run(agents: AgentsFactory) -> None:
    h = agents(approval_rules=RULES)
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    model = h.script([ToolCalls([Call("bash", {"command": "rm -rf /tmp/x"})]),
                      echo_last_tool_result])  # fmt: skip
    r = h.client.post(
        "/api/chat/runs",
        json={"sessionId": sid, "chatId": chat_id, "prompt": "go", "model": model},
        headers=h.account.headers,
    )
    assert r.status_code == 202, r.text
    assert h.wait_run(r.json()["runId"])["status"] == "completed"
    part = _tool_parts(h, sid, chat_id)["call_0_0"]
    assert part["state"] == "output-error"
    assert "needs a person's approval" in part["errorText"]


def test_a_turn_waiting_for_approval_holds_no_worker_slot(agents: AgentsFactory) -> None:
    h = agents(agent_worker_concurrency=1, approval_rules=RULES)
    sid, chat_a, run_a, _ = _held_turn(h, Call("bash", {"command": RISKY}))
    chat_b = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    other = Background(h, sid, chat_b.json()["chat"]["id"], "hi", h.script([Text("meanwhile")]))
    assert text_of(other.chunks()) == "meanwhile"  # not queued behind the open approval
    assert h.run(run_a)["status"] == "running"
    status, continued = _answer(h, sid, chat_a, approved=True)
    assert status == 200 and isinstance(continued, list)
    assert h.wait_run(run_a)["status"] == "completed"


def test_a_restart_while_waiting_keeps_the_approval_open(agents: AgentsFactory) -> None:
    """The service stops (a deploy) while the turn waits; the next process with the same
    executor id recovers it still waiting, and the answer then finishes it."""
    executor = f"test-{uuid.uuid4().hex[:12]}"
    h = agents(executor_id=executor, approval_rules=RULES)
    sid, chat_id, run_id, chunks = _held_turn(h, Call("bash", {"command": RISKY}))
    h.client.__exit__(None, None, None)

    again = agents(executor_id=executor, approval_rules=RULES)
    again.account = h.account
    assert again.run(run_id)["status"] == "running"
    assert again.chat(sid, chat_id)["pendingApprovals"][0]["approvalId"] == "call_0_0"
    with again.client.stream(
        "GET", f"/api/chat/{chat_id}/stream", headers=again.account.headers
    ) as resumed:
        assert parse_sse(resumed.read().decode()) == chunks
    status, continued = _answer(again, sid, chat_id, approved=True)
    assert status == 200, continued
    assert isinstance(continued, list)
    assert tool_outputs(continued)["call_0_0"]["output"]["stdout"] == "removed\n"
    run = again.wait_run(run_id)
    assert run["status"] == "completed" and run["toolCalls"] == 1


def test_two_calls_wait_together_and_a_stop_ends_the_wait(agents: AgentsFactory) -> None:
    h = agents(approval_rules=RULES)
    sid, chat_id, run_id, chunks = _held_turn(
        h, Call("bash", {"command": "rm -rf a"}), Call("bash", {"command": "git push"})
    )
    asked = [c["toolCallId"] for c in chunks if c["type"] == "tool-approval-request"]
    assert asked == ["call_0_0", "call_0_1"]  # one response asks for both
    # Half an answer is refused and changes nothing.
    messages = h.chat(sid, chat_id)["messages"]
    part = next(p for p in messages[-1]["parts"] if p.get("toolCallId") == "call_0_0")
    part["state"], part["approval"]["approved"] = "approval-responded", True
    body = {"id": chat_id, "sessionId": sid, "messages": messages}
    r = h.client.post("/api/chat", json=body, headers=h.account.headers)
    assert r.status_code == 400 and "call_0_1" in r.json()["error"], r.text
    assert len(h.chat(sid, chat_id)["pendingApprovals"]) == 2

    r = h.client.post(f"/api/chat/{chat_id}/stop", headers=h.account.headers)
    assert r.status_code == 200 and r.json()["stopped"] is True
    assert h.wait_run(run_id)["status"] == "cancelled"
    parts = _tool_parts(h, sid, chat_id)
    assert [p["state"] for p in parts.values()] == ["output-error", "output-error"]
    assert h.chat(sid, chat_id)["pendingApprovals"] == []


@pytest.mark.slow
def test_kill_9_while_waiting_then_restart_still_waits(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer
) -> None:
    """A served process killed while its turn waits for approval: the next one (same data,
    same executor id) has the turn still waiting, shows it, and runs the call once approved."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"kill-{time.monotonic_ns()}"
    model_server.script(name, [ToolCalls([Call("bash", {"command": RISKY})]),
                               echo_last_tool_result])  # fmt: skip
    env = {
        "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model_server.base_url,
        "AGENT_SESSIONS_APPROVAL_RULES": json.dumps(RULES),
        "AGENT_SESSIONS_SANDBOX_UID_BASE": str(UID_BASE + 30),
        "AGENT_SESSIONS_SANDBOX_UID_COUNT": "10",
    }  # fmt: skip
    srv = start_server(sandbox_data_dir, backend.url, **env)
    headers = make_account(backend.db).headers
    try:
        sid = new_active_session(srv.url, headers)
        chat_id = f"chat-{time.monotonic_ns()}"
        user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "clean up"}]}
        body = {"id": chat_id, "sessionId": sid, "model": f"openai/{name}", "messages": [user]}
        r = httpx.post(f"{srv.url}/api/chat", json=body, headers=headers, timeout=60)
        chunks, run_id = parse_sse(r.text), r.headers["x-workflow-run-id"]
        assert chunks[-1] == {"type": "finish", "finishReason": "tool-calls"}
        srv.process.kill()
        srv.process.wait(10)
    finally:
        stop_server(srv)
    srv = start_server(sandbox_data_dir, backend.url, **env)
    try:
        run = httpx.get(f"{srv.url}/api/chat/runs/{run_id}", headers=headers).json()
        assert run["status"] == "running"
        chat = f"{srv.url}/api/sessions/{sid}/chats/{chat_id}"
        detail = httpx.get(chat, headers=headers).json()
        assert [p["toolCallId"] for p in detail["pendingApprovals"]] == ["call_0_0"]
        resumed = httpx.get(f"{srv.url}/api/chat/{chat_id}/stream", headers=headers, timeout=60)
        assert parse_sse(resumed.text) == chunks
        messages = detail["messages"]
        part = next(p for p in messages[-1]["parts"] if p.get("toolCallId") == "call_0_0")
        part["state"], part["approval"]["approved"] = "approval-responded", True
        answer = {"id": chat_id, "sessionId": sid, "messages": messages}
        r = httpx.post(f"{srv.url}/api/chat", json=answer, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        continued = parse_sse(r.text)
        assert tool_outputs(continued)["call_0_0"]["output"]["stdout"] == "removed\n"
        assert continued[-1]["type"] == "finish"
        run = httpx.get(f"{srv.url}/api/chat/runs/{run_id}", headers=headers).json()
        assert run["toolCalls"] == 1
    finally:
        stop_server(srv)
