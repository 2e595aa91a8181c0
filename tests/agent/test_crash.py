"""kill -9 of a real ``serve`` in the middle of a turn: after a restart the turn finishes once.

The server runs real bubblewrap sandboxes; the model is the scripted stand-in over HTTP. The
second server (same data, same executor id) recovers the turn through DBOS: completed tool
calls are not run again, the stream stays valid from chunk 0, and the chat holds one user and
one assistant message.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sessions.store import turns
from tests.agent.conftest import AgentsFactory, parse_sse
from tests.agent.protocol import check_protocol, text_of, tool_outputs
from tests.conftest import Backend, Server, make_account, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import Call, ModelServer, Text, ToolCalls
from tests.support.waiting import until

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(sandbox_data_dir: Path) -> Path:
    """The server's data dir: one the sandboxes' own uids can traverse."""
    return sandbox_data_dir


def _env(model_server: ModelServer) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": model_server.base_url,
        "AGENT_SESSIONS_SANDBOX_UID_BASE": str(UID_BASE + 20),
        "AGENT_SESSIONS_SANDBOX_UID_COUNT": "20",
    }


def _wait_run(srv: Server, run_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        run: dict[str, Any] = httpx.get(f"{srv.url}/api/chat/runs/{run_id}", headers=headers).json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


def _crash_then_restart(
    backend: Backend,
    data_dir: Path,
    model_server: ModelServer,
    steps: list[Any],
    needle: str,
    graceful: bool = False,
    **extra_env: str,
) -> tuple[Server, dict[str, str], str, str, str]:
    """Start a turn, kill -9 the server once ``needle`` is in the stream (with ``graceful``,
    SIGTERM: a restart for a deploy), start a new one.

    Returns the new server (the caller stops it), the auth headers, session, chat and run ids.
    """
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"crash-{time.monotonic_ns()}"
    model_server.script(name, steps)
    env = {**_env(model_server), **extra_env}
    srv = start_server(data_dir, backend.url, **env)
    h = make_account(backend.db).headers
    try:
        created = httpx.post(f"{srv.url}/api/sessions", json={}, headers=h).json()
        sid, chat_id = created["session"]["id"], created["chat"]["id"]
        deadline = time.monotonic() + 60
        while (
            httpx.get(f"{srv.url}/api/sessions/{sid}", headers=h).json()["session"][
                "lifecycleState"
            ]
            != "active"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = {
            "id": chat_id,
            "sessionId": sid,
            "model": f"openai/{name}",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}],
        }
        seen = ""
        with httpx.stream("POST", f"{srv.url}/api/chat", json=body, headers=h, timeout=60) as r:
            run_id = r.headers["x-workflow-run-id"]
            try:
                for piece in r.iter_text():
                    seen += piece
                    if needle in seen:
                        time.sleep(0.3)
                        if graceful:
                            break  # uvicorn would wait for an open stream to end
                        srv.process.kill()
                        srv.process.wait(10)
            except httpx.HTTPError:
                pass
        if graceful:
            srv.process.terminate()
            srv.process.wait(30)
        assert srv.process.returncode == (-15 if graceful else -9), seen[-2000:]
    finally:
        stop_server(srv)
    return start_server(data_dir, backend.url, **env), h, sid, chat_id, run_id


def _resume(srv: Server, chat_id: str, h: dict[str, str]) -> list[dict[str, Any]] | None:
    """The recovered turn's stream from chunk 0 (None if it ended before we asked)."""
    with httpx.stream(
        "GET", f"{srv.url}/api/chat/{chat_id}/stream?startIndex=0", headers=h, timeout=60
    ) as r:
        raw = r.read().decode()
        return parse_sse(raw) if r.status_code == 200 else None


def _messages(srv: Server, sid: str, chat_id: str, h: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(
        f"{srv.url}/api/sessions/{sid}/chats/{chat_id}", headers=h
    ).json()
    return out


@pytest.mark.parametrize("graceful", [False, True], ids=["kill-9", "sigterm"])
def test_kill_9_during_a_tool_call_then_restart_finishes_the_turn_once(
    backend: Backend, data_dir: Path, model_server: ModelServer, graceful: bool
) -> None:
    """Also for a graceful stop (SIGTERM, as a deploy does): shutting down is not a failure
    of the turn, which resumes in the next process."""
    steps = [
        ToolCalls([Call("bash", {"command": "echo once >> log.txt"})]),
        ToolCalls([Call("bash", {"command": "sleep 3; echo slow >> log.txt"})]),
        Text("recovered", chunks=3),
    ]
    needle = '"toolCallId":"call_1_0","toolName":"bash","input"'
    srv, h, sid, chat_id, run_id = _crash_then_restart(
        backend, data_dir, model_server, steps, needle, graceful=graceful
    )
    try:
        chunks = _resume(srv, chat_id, h)
        run = _wait_run(srv, run_id, h)
        assert run["status"] == "completed", run
        assert run["toolCalls"] == 2 and run["steps"] == 3
        if chunks is not None:  # None only if the turn had already ended (a very slow restart)
            check_protocol(chunks)
            assert text_of(chunks) == "recovered"
            assert list(tool_outputs(chunks)) == ["call_0_0", "call_1_0"]

        detail = _messages(srv, sid, chat_id, h)
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        parts = detail["messages"][1]["parts"]
        assert [p["type"] for p in parts].count("step-start") == 3
        assert [p["toolCallId"] for p in parts if "toolCallId" in p] == ["call_0_0", "call_1_0"]
        assert parts[-1] == {"type": "text", "text": "recovered", "state": "done"}
        assert detail["chat"]["activeStreamId"] is None

        # The first command ran once; the one cut off by the crash ran to completion once.
        check = f"check-{time.monotonic_ns()}"
        model_server.script(check, [ToolCalls([Call("read", {"filePath": "log.txt"})]), Text(".")])
        chat2 = httpx.post(f"{srv.url}/api/sessions/{sid}/chats", json={}, headers=h).json()
        body2 = {
            "id": chat2["chat"]["id"], "sessionId": sid, "model": f"openai/{check}",
            "messages": [{"id": "u2", "role": "user", "parts": [{"type": "text", "text": "?"}]}],
        }  # fmt: skip
        r2 = httpx.post(f"{srv.url}/api/chat", json=body2, headers=h, timeout=60)
        out = tool_outputs(parse_sse(r2.text))["call_0_0"]["output"]
        assert out.startswith("1: once\n2: slow\n"), out
        # Model requests are not logged one line each (the HTTP clients' INFO lines are off).
        log = srv.log.read_text().splitlines()
        assert not [line for line in log if "HTTP Request:" in line]
        # The restart says what it recovers, and the turn says it was (README, Operating).
        assert [line for line in log if " INFO dbos Recovering " in line], log
        recovered = [line for line in log if "turn recovered after a restart" in line]
        assert len(recovered) == 1 and recovered[0].endswith(f" run_id={run_id}"), log
    finally:
        stop_server(srv)


def test_kill_9_in_the_last_tool_call_then_restart_ends_the_turn_with_its_output(
    backend: Backend, data_dir: Path, model_server: ModelServer
) -> None:
    """The step cap ends the turn right after the call the crash cut off: the recovered attempt
    goes from that tool straight to the turn's end, which still shows the call's output."""
    steps = [
        ToolCalls([Call("bash", {"command": "echo once >> log.txt"})]),
        ToolCalls([Call("bash", {"command": "sleep 3; echo slow >> log.txt; echo done"})]),
        Text("never reached"),
    ]
    needle = '"toolCallId":"call_1_0","toolName":"bash","input"'
    srv, h, sid, chat_id, run_id = _crash_then_restart(
        backend, data_dir, model_server, steps, needle, AGENT_SESSIONS_AGENT_STEP_CAP="2"
    )
    try:
        chunks = _resume(srv, chat_id, h)
        run = _wait_run(srv, run_id, h)
        assert run["status"] == "failed" and run["error"].startswith("Step limit reached"), run
        assert run["toolCalls"] == 2 and run["steps"] == 2
        if chunks is not None:
            check_protocol(chunks)
            outputs = tool_outputs(chunks)
            assert [o["type"] for o in outputs.values()] == ["tool-output-available"] * 2
            assert outputs["call_1_0"]["output"]["stdout"] == "done\n"
        parts = _messages(srv, sid, chat_id, h)["messages"][1]["parts"]
        tools = [p for p in parts if "toolCallId" in p]
        assert [p["state"] for p in tools] == ["output-available"] * 2
        assert tools[1]["output"]["stdout"] == "done\n"
    finally:
        stop_server(srv)


def test_kill_9_while_a_command_shows_its_output_then_restart_still_gives_its_result(
    backend: Backend, data_dir: Path, model_server: ModelServer
) -> None:
    """A crash after the stream carried a running command's preliminary output: the recovered
    turn runs the command again and still sends its result (a preliminary output is not the
    call's outcome), so the stream read from its start is valid and ends the call."""
    steps = [
        ToolCalls([Call("bash", {"command": "echo before-crash; sleep 2; echo after"})]),
        Text("recovered", chunks=3),
    ]
    srv, h, sid, chat_id, run_id = _crash_then_restart(
        backend, data_dir, model_server, steps, '"preliminary":true'
    )
    try:
        chunks = _resume(srv, chat_id, h)
        run = _wait_run(srv, run_id, h)
        assert run["status"] == "completed", run
        if chunks is not None:
            check_protocol(chunks)
            assert any(c.get("preliminary") for c in chunks)
            final = tool_outputs(chunks)["call_0_0"]
            assert final["type"] == "tool-output-available" and "preliminary" not in final
            assert final["output"]["stdout"] == "before-crash\nafter\n"
        parts = _messages(srv, sid, chat_id, h)["messages"][1]["parts"]
        (call,) = [p for p in parts if "toolCallId" in p]
        assert call["state"] == "output-available" and "preliminary" not in call
        assert call["output"]["stdout"] == "before-crash\nafter\n"
    finally:
        stop_server(srv)


def test_kill_9_while_the_model_streams_then_restart_keeps_the_stream_valid(
    backend: Backend, data_dir: Path, model_server: ModelServer
) -> None:
    words = "one two three four five six seven eight nine ten"
    steps = [
        ToolCalls([Call("todo_write", {"todos": []})]),
        Text(words, chunks=10, delay_between_chunks=0.4),
    ]
    srv, h, sid, chat_id, run_id = _crash_then_restart(
        backend, data_dir, model_server, steps, '"type":"text-delta"'
    )
    try:
        chunks = _resume(srv, chat_id, h)
        assert _wait_run(srv, run_id, h)["status"] == "completed"
        if chunks is not None:
            check_protocol(chunks)  # the interrupted text part was closed, the step redone
            assert text_of(chunks).endswith(words)
        parts = _messages(srv, sid, chat_id, h)["messages"][1]["parts"]
        texts = [p["text"] for p in parts if p["type"] == "text"]
        assert texts == [words]  # stored once, whatever the stream showed before the crash
        assert [p["type"] for p in parts].count("step-start") == 2
    finally:
        stop_server(srv)


def test_kill_9_between_accepting_a_turn_and_starting_it_then_restart_runs_it(
    backend: Backend, data_dir: Path, model_server: ModelServer
) -> None:
    """The run is committed, its workflow never started: the next start hands it to the queue."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"accepted-{time.monotonic_ns()}"
    model_server.script(name, [Text("after the crash")])
    env = _env(model_server)
    srv = start_server(data_dir, backend.url, AGENT_SESSIONS_FAULT_POINT="turn-accepted", **env)
    h = make_account(backend.db).headers
    try:
        created = httpx.post(f"{srv.url}/api/sessions", json={}, headers=h).json()
        sid, chat_id = created["session"]["id"], created["chat"]["id"]
        body = {
            "id": chat_id,
            "sessionId": sid,
            "model": f"openai/{name}",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}],
        }
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{srv.url}/api/chat", json=body, headers=h, timeout=60)
        srv.process.wait(10)
        assert srv.process.returncode == -9
    finally:
        stop_server(srv)
    srv = start_server(data_dir, backend.url, **env)
    try:
        run_id = _messages(srv, sid, chat_id, h)["chat"]["activeStreamId"]
        assert run_id, "the accepted turn holds the chat"
        run = _wait_run(srv, run_id, h)
        assert run["status"] == "completed", run
        detail = _messages(srv, sid, chat_id, h)
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert detail["chat"]["activeStreamId"] is None
        assert text_of(_resume(srv, chat_id, h) or []) in ("after the crash", "")
    finally:
        stop_server(srv)


def test_a_shutdown_in_the_middle_of_a_turn_is_not_a_failure(agents: AgentsFactory) -> None:
    """A graceful stop (a deploy) while a model step is in flight: the step that fails because
    the process is going down must not end the run; the next process with the same executor id
    finishes it."""
    executor = f"test-{uuid.uuid4().hex[:12]}"
    h = agents(executor_id=executor)
    gate = threading.Event()
    model = h.script(
        [ToolCalls([Call("todo_write", {"todos": []})]), Text("after the restart", hold=gate)]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    r = h.client.post(
        "/api/chat/runs",
        json={"sessionId": sid, "chatId": chat_id, "prompt": "go", "model": model},
        headers=h.account.headers,
    )
    assert r.status_code == 202, r.text
    run_id = r.json()["runId"]
    name = model.split("/", 1)[1]
    until("the held model step", lambda: len(h.model.requests(name)) == 2)
    h.client.__exit__(None, None, None)  # the app shuts down: DBOS goes while the step waits
    gate.set()
    with h.backend.db.read() as s:
        assert turns.get_run(s, run_id).status == "running"  # not recorded as ended
    again = agents(executor_id=executor)
    again.account = h.account
    run = again.wait_run(run_id)
    assert run["status"] == "completed", run
    texts = [p.get("text") for m in again.chat(sid, chat_id)["messages"] for p in m["parts"]]
    assert texts.count("after the restart") == 1
