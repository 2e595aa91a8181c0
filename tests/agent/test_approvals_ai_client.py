"""Tool approvals and ``ask_user_question`` driven by the AI SDK's own client (the ``ai``
package, v6, in Node) against a served instance over real HTTP: ``addToolApprovalResponse`` with
``sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses``, and
``addToolOutput`` with ``lastAssistantMessageIsCompleteWithToolCalls``, must find the wire they
expect (ADR 14).

``make test`` installs the client (``npm ci --prefix tests/support/node``); without ``node``
these tests are skipped, saying why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_approvals import RULES
from tests.conftest import Backend, make_account, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import Call, ModelServer, ToolCalls, echo_last_tool_result
from tests.support.served_sessions import new_active_session

NODE_DIR = Path(__file__).parents[1] / "support" / "node"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: the AI SDK client cannot run"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "ai").is_dir(),
        reason=f"the AI SDK client is not installed: npm ci --prefix {NODE_DIR} (make test does)",
    ),
]


def _client(payload: dict[str, Any]) -> dict[str, Any]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(NODE_DIR / "respond.mjs"), json.dumps(payload)],
        capture_output=True, text=True, timeout=120, cwd=NODE_DIR,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("approved", [True, False], ids=["approve", "deny"])
def test_the_ai_sdk_client_answers_an_approval(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer, approved: bool
) -> None:
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"node-{time.monotonic_ns()}"
    command = "echo x > gone.txt && rm -rf gone.txt && echo removed"
    model_server.script(name, [ToolCalls([Call("bash", {"command": command})]),
                               echo_last_tool_result])  # fmt: skip
    srv = start_server(
        sandbox_data_dir, backend.url, OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=model_server.base_url, AGENT_SESSIONS_APPROVAL_RULES=json.dumps(RULES),
        AGENT_SESSIONS_SANDBOX_UID_BASE=str(UID_BASE + 40),
        AGENT_SESSIONS_SANDBOX_UID_COUNT="10",
    )  # fmt: skip
    try:
        headers = make_account(backend.db).headers
        sid = new_active_session(srv.url, headers)
        chat_id = f"chat-{time.monotonic_ns()}"
        out = _client({
            "url": srv.url, "headers": headers, "sessionId": sid, "chatId": chat_id,
            "model": f"openai/{name}", "prompt": "clean up", "approved": approved,
            "reason": None if approved else "keep it",
        })  # fmt: skip
        assert out["errors"] == []
        [asked] = out["asked"]
        assert asked["type"] == "tool-bash" and asked["approval"] == {"id": "call_0_0"}
        assert out["finishReasons"][0] == "tool-calls"  # the first response ended there
        messages = out["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]  # one reply, continued
        part = next(p for p in messages[1]["parts"] if p.get("toolCallId") == "call_0_0")
        text = "".join(p["text"] for p in messages[1]["parts"] if p["type"] == "text")
        if approved:
            assert part["state"] == "output-available"
            assert part["output"]["stdout"] == "removed\n"
            assert "removed" in text
        else:
            assert part["state"] == "output-denied"
            assert part["approval"] == {"id": "call_0_0", "approved": False, "reason": "keep it"}
            assert text == "The user denied this call: keep it"
    finally:
        stop_server(srv)


def test_the_ai_sdk_client_answers_a_question(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer
) -> None:
    """The response ends at the question, so the client (no longer streaming) sends the
    output it was given (``addToolOutput``) by itself; its response continues the reply."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"node-ask-{time.monotonic_ns()}"
    question = {"question": "Which language?", "header": "Language",
                "options": [{"label": "Python"}, {"label": "Go"}]}  # fmt: skip
    model_server.script(name, [ToolCalls([Call("ask_user_question", {"questions": [question]})]),
                               echo_last_tool_result])  # fmt: skip
    srv = start_server(
        sandbox_data_dir, backend.url, OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=model_server.base_url, AGENT_SESSIONS_SANDBOX_UID_BASE=str(UID_BASE + 50),
        AGENT_SESSIONS_SANDBOX_UID_COUNT="10",
    )  # fmt: skip
    try:
        headers = make_account(backend.db).headers
        sid = new_active_session(srv.url, headers)
        chat_id = f"chat-{time.monotonic_ns()}"
        out = _client(
            {"url": srv.url, "headers": headers, "sessionId": sid, "chatId": chat_id,
             "model": f"openai/{name}", "prompt": "ask me",
             "answers": {"Which language?": "Go"}},
        )  # fmt: skip
        assert out["errors"] == []
        [asked] = out["asked"]
        assert asked["toolCallId"] == "call_0_0" and asked["input"] == {"questions": [question]}
        assert out["finishReasons"] == ["tool-calls", "stop"]  # the first response ended there
        messages = out["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]  # one reply, continued
        part = next(p for p in messages[1]["parts"] if p.get("toolCallId") == "call_0_0")
        assert part["state"] == "output-available"
        assert part["output"] == {"answers": {"Which language?": "Go"}}
        text = "".join(p["text"] for p in messages[1]["parts"] if p["type"] == "text")
        assert "Go" in text
    finally:
        stop_server(srv)
