"""Controlling turns: resume, disconnect, stop, one turn per chat, concurrency, caps, models."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from dbos import error as dbos_error

from agent_sessions.agent import registry, stream
from agent_sessions.agent.stream import RunLog, read_chunks
from agent_sessions.sandbox import provider_from_settings
from agent_sessions.store import turns as store
from tests.agent.conftest import Agents, AgentsFactory, parse_sse
from tests.agent.protocol import check_protocol, text_of, tool_outputs
from tests.sandbox.test_contract import _host_processes_matching
from tests.support.model_server import Call, Text, ToolCalls


class Background:
    """Read a turn's POST stream in a thread while the test does something else."""

    def __init__(self, h: Agents, sid: str, chat_id: str, text: str, model: str) -> None:
        self.raw = ""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.started = threading.Event()

        def read() -> None:
            with h.client.stream(
                "POST", "/api/chat", json=h.body(sid, chat_id, text, model=model),
                headers=h.account.headers,
            ) as r:  # fmt: skip
                self.status, self.headers = r.status_code, dict(r.headers)
                self.started.set()
                for piece in r.iter_text():
                    self.raw += piece

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def chunks(self) -> list[dict[str, Any]]:
        self.thread.join(60)
        assert not self.thread.is_alive(), "stream did not end"
        return parse_sse(self.raw)

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.raw:
            assert time.monotonic() < deadline, f"never saw {needle!r} in {self.raw[-500:]}"
            time.sleep(0.02)


def _session(h: Agents) -> tuple[str, str]:
    created = h.new_session()
    return created["session"]["id"], created["chat"]["id"]


def test_resume_from_start_index_yields_exactly_the_tail(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script(
        [ToolCalls([Call("bash", {"command": "sleep 1.5; echo done"})]), Text("all done", chunks=5)]
    )
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", model)
    bg.wait_for("tool-input-available")
    with h.client.stream(
        "GET", f"/api/chat/{chat_id}/stream?startIndex=3", headers=h.account.headers
    ) as r:
        assert r.status_code == 200
        assert r.headers["x-workflow-run-id"] == bg.headers["x-workflow-run-id"]
        tail = parse_sse(r.read().decode())
    full = bg.chunks()
    check_protocol(full)
    assert tail == full[3:]
    # Nothing live any more: 204.
    r2 = h.client.get(f"/api/chat/{chat_id}/stream", headers=h.account.headers)
    assert r2.status_code == 204


class _DatabaseReads:
    """Counts the stream values readers of this process took from the database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.values = 0
        real = stream.read_chunks

        async def counted(*args: Any, **kwargs: Any) -> AsyncGenerator[list[Any], None]:
            async with contextlib.aclosing(real(*args, **kwargs)) as values:
                async for value in values:
                    self.values += 1
                    yield value

        monkeypatch.setattr(stream, "read_chunks", counted)


def _tool_turn_model(h: Agents) -> str:
    steps: list[Any] = [
        ToolCalls([Call("bash", {"command": f"sleep 0.2; echo step {i}"})]) for i in range(4)
    ]
    return h.script([*steps, Text("all done", chunks=5)])


def _read_twice(
    h: Agents, *, after: str, start_index: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A tool turn's POST stream; a second reader from ``start_index`` once ``after`` has been
    seen; and the stream as the database holds it. All three are returned."""
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", _tool_turn_model(h))
    bg.wait_for(after)
    with h.client.stream(
        "GET", f"/api/chat/{chat_id}/stream?startIndex={start_index}", headers=h.account.headers
    ) as r:
        resumed = parse_sse(r.read().decode())
    full = bg.chunks()
    check_protocol(full)
    stored = [c for batch in _stored_stream(h, bg.headers["x-workflow-run-id"]) for c in batch]
    return full, resumed, stored


def test_a_reader_here_follows_the_turn_from_memory(
    agents: AgentsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn's first execution keeps its stream values in memory (``RunLog``): the POST
    stream and a resumed reader of the same process read none of them from the database,
    and see exactly what the database holds."""
    h = agents()
    reads = _DatabaseReads(monkeypatch)
    full, resumed, stored = _read_twice(h, after="step 1", start_index=0)
    assert resumed == full == stored
    assert len(full) > 20
    # A reader that starts before the turn's first line runs may take a value or two from
    # the database; none after that.
    assert reads.values <= 2, reads.values


def test_readers_go_on_from_the_database_when_the_log_gives_up(
    agents: AgentsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log over its size stops being used mid-turn: its readers go on from the database at
    the value they reached, without a gap or a repeat."""
    monkeypatch.setattr(RunLog, "MAX_BYTES", 600)
    h = agents()
    reads = _DatabaseReads(monkeypatch)
    full, resumed, stored = _read_twice(h, after="step 0", start_index=2)
    assert resumed == full[2:]
    assert stored == full
    assert reads.values > 4  # both readers went to the database


def test_a_reader_without_the_log_starts_at_start_index_from_the_database(
    agents: AgentsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader with no log to follow (a recovered turn keeps none, a long one gives it up)
    reads the stream from the database alone, from ``startIndex`` exactly: here an index
    inside a stored value (a value holds the chunks written together)."""
    monkeypatch.setattr(RunLog, "MAX_BYTES", 0)  # no log: every reader reads the database
    h = agents()
    reads = _DatabaseReads(monkeypatch)
    steps: list[Any] = [ToolCalls([Call("bash", {"command": f"echo step {i}"})]) for i in range(2)]
    held = "until [ -e go ]; do sleep 0.05; done; echo released"  # until the test says
    model = h.script([*steps, ToolCalls([Call("bash", {"command": held})]), Text("done", chunks=5)])
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", model)
    bg.wait_for('"toolCallId":"call_2_0","toolName":"bash","input"')
    run_id = bg.headers["x-workflow-run-id"]
    # Chunks up to the held step are stored; start inside the first value of several.
    sizes = [len(batch) for batch in _stored_stream(h, run_id, wait=False)]
    first = next((i for i, n in enumerate(sizes) if n > 1), None)
    assert first is not None, f"no stored value holds several chunks: {sizes}"
    start = sum(sizes[:first]) + 1
    resumed: list[dict[str, Any]] = []

    def resume() -> None:
        with h.client.stream(
            "GET", f"/api/chat/{chat_id}/stream?startIndex={start}", headers=h.account.headers
        ) as r:
            assert r.status_code == 200
            resumed.extend(parse_sse(r.read().decode()))

    reader = threading.Thread(target=resume, daemon=True)
    reader.start()
    _write_file(h, sid, "go")  # the held step ends; the turn goes on
    full = bg.chunks()
    reader.join(60)
    assert not reader.is_alive(), "the resumed stream did not end"
    check_protocol(full)
    assert resumed == full[start:]
    stored = _stored_stream(h, run_id)
    assert [c for batch in stored for c in batch] == full
    assert reads.values >= len(stored)  # from the database, as there is no log


@pytest.mark.parametrize("log", ["memory", "database"])
def test_a_resumed_stream_tells_its_tail_index(
    agents: AgentsFactory, monkeypatch: pytest.MonkeyPatch, log: str
) -> None:
    """``x-workflow-stream-tail-index``: the index of the last chunk written when the resumed
    response began, as Vercel Workflow's streams send it (its chat transport resolves a
    negative start index with it). Held mid-turn, so that nothing is written meanwhile."""
    if log == "database":
        monkeypatch.setattr(RunLog, "MAX_BYTES", 0)
    h = agents()
    held = "until [ -e go ]; do sleep 0.05; done; echo released"
    model = h.script([ToolCalls([Call("bash", {"command": held})]), Text("done")])
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", model)
    bg.wait_for('"toolCallId":"call_0_0","toolName":"bash","input"')
    run_id = bg.headers["x-workflow-run-id"]
    with h.client.stream(
        "GET", f"/api/chat/{chat_id}/stream?startIndex=2", headers=h.account.headers
    ) as r:
        assert r.status_code == 200
        tail = int(r.headers["x-workflow-stream-tail-index"])
        written_so_far = sum(len(batch) for batch in _stored_stream(h, run_id, wait=False))
        _write_file(h, sid, "go")
        resumed = parse_sse(r.read().decode())
    assert tail == written_so_far - 1
    full = bg.chunks()
    assert full[tail]["type"] == "tool-input-available" and resumed == full[2:]
    # Nothing live any more: 204, without the header.
    r2 = h.client.get(f"/api/chat/{chat_id}/stream", headers=h.account.headers)
    assert r2.status_code == 204 and "x-workflow-stream-tail-index" not in r2.headers


def test_a_negative_start_index_counts_back_from_the_tail(agents: AgentsFactory) -> None:
    """Vercel's chat transport sends a negative ``startIndex`` (its ``initialStartIndex``) to
    read only the last chunks: -N starts N chunks before the end, at 0 at most, and the
    header lets the client resolve the same index. Held mid-turn, so nothing moves meanwhile."""
    h = agents()
    held = "until [ -e go ]; do sleep 0.05; done; echo released"
    model = h.script([ToolCalls([Call("bash", {"command": held})]), Text("done")])
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", model)
    bg.wait_for('"toolCallId":"call_0_0","toolName":"bash","input"')
    url = f"/api/chat/{chat_id}/stream?startIndex="
    with (
        h.client.stream("GET", url + "-2", headers=h.account.headers) as last_two,
        h.client.stream("GET", url + "-100000", headers=h.account.headers) as too_far,
    ):
        assert last_two.status_code == too_far.status_code == 200
        tail = int(last_two.headers["x-workflow-stream-tail-index"])
        assert int(too_far.headers["x-workflow-stream-tail-index"]) == tail
        _write_file(h, sid, "go")
        from_last_two = parse_sse(last_two.read().decode())
        from_too_far = parse_sse(too_far.read().decode())
    full = bg.chunks()
    assert tail >= 2 and from_last_two == full[tail - 1 :]
    assert from_last_two[1]["type"] == "tool-input-available"
    assert from_too_far == full


def _write_file(h: Agents, sid: str, path: str) -> None:
    """An empty file in the session's sandbox, written from the host."""
    session = h.client.get(f"/api/sessions/{sid}", headers=h.account.headers).json()["session"]

    async def write() -> None:
        box = await provider_from_settings(h.settings).connect(session["sandboxState"])
        await box.write_file(path, b"")

    asyncio.run(write())


def _stored_stream(h: Agents, run_id: str, wait: bool = True) -> list[list[dict[str, Any]]]:
    """The run's stream as the database holds it (after the run, unless not ``wait``)."""

    async def read() -> list[list[dict[str, Any]]]:
        out = []
        with contextlib.suppress(dbos_error.DBOSStreamTimeoutError):
            async for batch in read_chunks(run_id, wait_at_most=0.2):
                out.append(batch)
        return out

    if wait:
        h.wait_run(run_id)
    return h.client.portal.call(read)  # type: ignore[union-attr]


def test_a_client_disconnect_does_not_stop_the_turn(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script([ToolCalls([Call("bash", {"command": "sleep 1; echo finished"})]), Text("ok")])
    sid, chat_id = _session(h)
    with h.client.stream(
        "POST", "/api/chat", json=h.body(sid, chat_id, "go", model=model),
        headers=h.account.headers,
    ) as r:  # fmt: skip
        run_id = r.headers["x-workflow-run-id"]
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    # The client went away after one chunk; the turn goes on and is stored whole.
    run = h.wait_run(run_id)
    assert run["status"] == "completed"
    assistant = h.chat(sid, chat_id)["messages"][-1]
    bash = next(p for p in assistant["parts"] if p["type"] == "tool-bash")
    assert bash["output"]["stdout"] == "finished\n"
    assert assistant["parts"][-1]["text"] == "ok"


def _wait_until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_stop_in_the_middle_of_a_long_tool_call(agents: AgentsFactory) -> None:
    h = agents()
    command = f"sleep {600_000 + secrets.randbelow(99_999)}"  # found by this on the host
    model = h.script(
        [
            ToolCalls([Call("write", {"filePath": "notes.txt", "content": "kept"})]),
            ToolCalls([Call("bash", {"command": f"{command}; echo never > never.txt"})]),
            Text("never said"),
        ]
    )
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", model)
    _wait_until(lambda: _host_processes_matching(command), "the command never ran")
    began = time.monotonic()
    r = h.client.post(f"/api/chat/{chat_id}/stop", headers=h.account.headers)
    assert r.status_code == 200 and r.json() == {"success": True, "stopped": True}
    chunks = bg.chunks()
    assert time.monotonic() - began < 10
    check_protocol(chunks)
    outputs = tool_outputs(chunks)
    assert outputs["call_0_0"]["type"] == "tool-output-available"
    assert outputs["call_1_0"] == {
        "type": "tool-output-error", "toolCallId": "call_1_0", "errorText": "Cancelled by the user",
    }  # fmt: skip
    assert "never said" not in text_of(chunks)
    # It says it was stopped: the AI SDK's abort chunk, and no "stop" of a turn that ended by
    # itself on the finish chunk (whose finishReason the SDK checks against its own list).
    assert {"type": "abort"} in chunks
    assert "finishReason" not in chunks[-1]
    assert chunks[-1]["messageMetadata"]["finishReason"] == "abort"

    run = h.wait_run(bg.headers["x-workflow-run-id"])
    assert run["status"] == "cancelled" and run["finishReason"] == "abort"
    detail = h.chat(sid, chat_id)
    assert detail["chat"]["activeStreamId"] is None
    parts = detail["messages"][-1]["parts"]
    states = {p["toolCallId"]: p["state"] for p in parts if "toolCallId" in p}
    assert states == {"call_0_0": "output-available", "call_1_0": "output-error"}
    # The command was killed, not left running (no process of it is left on the host).
    _wait_until(
        lambda: not _host_processes_matching(command), f"{command!r} still runs after the stop"
    )
    # Stopping again: nothing live.
    r = h.client.post(f"/api/chat/{chat_id}/stop", headers=h.account.headers)
    assert r.json() == {"success": True, "stopped": False}


def test_stop_while_the_model_has_not_answered(agents: AgentsFactory) -> None:
    """A model that has not sent its first token (thinking, or stuck) does not hold a stop:
    the request is abandoned and the turn ends at once, its earlier work kept."""
    h = agents()
    never = threading.Event()  # the model's answer is held until the test ends
    model = h.script([ToolCalls([Call("bash", {"command": "echo before"})]),
                      Text("never said", hold=never)])  # fmt: skip
    sid, chat_id = _session(h)
    try:
        bg = Background(h, sid, chat_id, "go", model)
        name = model.split("/", 1)[1]
        _wait_until(lambda: len(h.model.requests(name)) == 2, "the second request never came")
        r = h.client.post(f"/api/chat/{chat_id}/stop", headers=h.account.headers)
        assert r.json() == {"success": True, "stopped": True}
        # The stop waits for the turn to end: it has, while the model still holds its answer.
        assert h.run(bg.headers["x-workflow-run-id"])["status"] == "cancelled"
        chunks = bg.chunks()
        check_protocol(chunks)
        assert {"type": "abort"} in chunks
        assert tool_outputs(chunks)["call_0_0"]["type"] == "tool-output-available"
        assert "never said" not in text_of(chunks)
    finally:
        never.set()


def test_a_stop_recorded_by_another_process_stops_the_turn(agents: AgentsFactory) -> None:
    """Only the database flag, as a ``serve`` process that does not run the turn sets it: the
    turn's own watcher polls for it."""
    h = agents()
    model = h.script([ToolCalls([Call("bash", {"command": "sleep 60"})]), Text("never said")])
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "go", model)
    bg.wait_for('"toolCallId":"call_0_0","toolName":"bash","input"')
    run_id = bg.headers["x-workflow-run-id"]
    with h.backend.db.write() as s:
        assert store.request_stop(s, run_id)
    chunks = bg.chunks()
    check_protocol(chunks)
    assert tool_outputs(chunks)["call_0_0"]["errorText"] == "Cancelled by the user"
    assert "never said" not in text_of(chunks)
    assert {"type": "abort"} in chunks
    run = h.wait_run(run_id)
    assert run["status"] == "cancelled" and run["finishReason"] == "abort"


def test_a_stop_recorded_elsewhere_stops_only_its_own_turn(agents: AgentsFactory) -> None:
    """The process reads the stop requests of all its turns in one poll: each is stopped by its
    own flag only."""
    h = agents()
    created = h.new_session()
    sid, chat_a = created["session"]["id"], created["chat"]["id"]
    r = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    chat_b = r.json()["chat"]["id"]
    model_a = h.script([ToolCalls([Call("bash", {"command": "sleep 60"})]), Text("never said")])
    model_b = h.script([ToolCalls([Call("bash", {"command": "sleep 4"})]), Text("B")])
    a = Background(h, sid, chat_a, "a", model_a)
    b = Background(h, sid, chat_b, "b", model_b)
    a.wait_for('"toolCallId":"call_0_0","toolName":"bash","input"')
    b.wait_for('"toolCallId":"call_0_0","toolName":"bash","input"')
    assert registry.runs.polling  # one poller for both
    with h.backend.db.write() as s:
        assert store.request_stop(s, a.headers["x-workflow-run-id"])
    ca = a.chunks()
    assert {"type": "abort"} in ca and "never said" not in text_of(ca)
    assert b.thread.is_alive(), "the other turn ended with the stopped one"
    cb = b.chunks()
    check_protocol(cb)
    assert text_of(cb) == "B" and {"type": "abort"} not in cb
    assert h.wait_run(b.headers["x-workflow-run-id"])["status"] == "completed"
    deadline = time.monotonic() + 5  # no turn runs: the process stops polling
    while registry.runs.polling:
        assert time.monotonic() < deadline, "the stop poller outlived the turns"
        time.sleep(0.05)


def test_a_second_turn_on_a_busy_chat_is_409_and_changes_nothing(agents: AgentsFactory) -> None:
    h = agents()
    gate = threading.Event()  # the first turn stays live until the second has been refused
    model = h.script([Text("first", hold=gate)])
    sid, chat_id = _session(h)
    bg = Background(h, sid, chat_id, "first", model)
    bg.wait_for('"type":"start"')
    r = h.client.post(
        "/api/chat", json=h.body(sid, chat_id, "second", model=model), headers=h.account.headers
    )
    gate.set()
    assert r.status_code == 409
    assert r.json() == {"status": "error", "error": "This chat already has a turn in progress"}
    assert text_of(bg.chunks()) == "first"
    h.wait_run(bg.headers["x-workflow-run-id"])
    texts = [p.get("text") for m in h.chat(sid, chat_id)["messages"] for p in m["parts"]]
    assert "second" not in texts


def test_two_chats_of_one_session_run_at_once(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid, chat_a = created["session"]["id"], created["chat"]["id"]
    r = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    chat_b = r.json()["chat"]["id"]

    def meet(me: str, other: str) -> str:
        # Each command waits for the other's to have started: both end only if they ran at
        # the same time (one after the other, the first gives up after 60 s).
        return (
            f"touch {me}.started; for i in $(seq 1200); do "
            f"[ -e {other}.started ] && echo met && exit 0; sleep 0.05; done; echo alone"
        )

    model_a = h.script([ToolCalls([Call("bash", {"command": meet("a", "b")})]), Text("A")])
    model_b = h.script([ToolCalls([Call("bash", {"command": meet("b", "a")})]), Text("B")])
    a = Background(h, sid, chat_a, "a", model_a)
    b = Background(h, sid, chat_b, "b", model_b)
    ca, cb = a.chunks(), b.chunks()
    check_protocol(ca)
    check_protocol(cb)
    assert (text_of(ca), text_of(cb)) == ("A", "B")
    outputs = [tool_outputs(c)["call_0_0"]["output"]["stdout"] for c in (ca, cb)]
    assert outputs == ["met\n", "met\n"], "the two turns' commands did not run at once"


def test_the_step_cap_ends_the_turn_with_a_clear_error(agents: AgentsFactory) -> None:
    h = agents(agent_step_cap=3)
    model = h.script([ToolCalls([Call("todo_write", {"todos": []})])] * 10)
    sid, chat_id = _session(h)
    chunks, headers = h.turn(sid, chat_id, "loop", model=model)
    check_protocol(chunks)
    errors = [c for c in chunks if c["type"] == "error"]
    assert errors == [
        {
            "type": "error",
            "errorText": "Step limit reached: the turn made 3 model requests and was stopped.",
        }
    ]
    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "failed" and run["steps"] == 3
    assert run["error"] == errors[0]["errorText"]
    assert h.chat(sid, chat_id)["chat"]["activeStreamId"] is None
    # The third call ran, though no model step followed to announce it: its output is shown.
    outputs = tool_outputs(chunks)
    assert [o["type"] for o in outputs.values()] == ["tool-output-available"] * 3
    assert outputs["call_2_0"]["output"] == {"todos": []}
    assert run["toolCalls"] == 3


def test_a_failed_last_call_before_the_step_cap_shows_its_error(agents: AgentsFactory) -> None:
    """The call ran and failed, no model step followed: its failure is what the stream and the
    message show, not the turn's error."""
    h = agents(agent_step_cap=1)
    model = h.script([ToolCalls([Call("read", {"filePath": "missing.txt"})]), Text("never")])
    sid, chat_id = _session(h)
    chunks, _ = h.turn(sid, chat_id, "read it", model=model)
    check_protocol(chunks)
    output = tool_outputs(chunks)["call_0_0"]
    assert output["type"] == "tool-output-error"
    assert "missing.txt" in output["errorText"] and "Step limit" not in output["errorText"]


def test_a_model_error_fails_the_turn_and_releases_the_chat(agents: AgentsFactory) -> None:
    from tests.support.model_server import Fail

    h = agents()
    model = h.script([Fail(status=400, message="bad request from the stand-in")])
    sid, chat_id = _session(h)
    chunks, headers = h.turn(sid, chat_id, "hi", model=model)
    check_protocol(chunks)
    error = next(c for c in chunks if c["type"] == "error")
    assert "bad request from the stand-in" in error["errorText"]
    assert h.run(headers["x-workflow-run-id"])["status"] == "failed"
    assert h.chat(sid, chat_id)["chat"]["activeStreamId"] is None


def test_an_unconfigured_model_is_refused_before_the_turn(agents: AgentsFactory) -> None:
    h = agents()
    sid, chat_id = _session(h)
    r = h.client.post(
        "/api/chat",
        json=h.body(sid, chat_id, "hi", model="anthropic/claude-haiku-4.5"),
        headers=h.account.headers,
    )
    assert r.status_code == 400
    assert r.json() == {
        "status": "error",
        "error": "Model anthropic/claude-haiku-4.5 is not configured: set ANTHROPIC_API_KEY",
    }
    detail = h.chat(sid, chat_id)
    assert detail["messages"] == [] and detail["chat"]["activeStreamId"] is None
    r = h.client.post(
        "/api/chat", json=h.body(sid, chat_id, "hi", model="mystery/m1"), headers=h.account.headers
    )
    assert r.status_code == 400 and "Unknown model provider 'mystery'" in r.json()["error"]

    models = h.client.get("/api/models", headers=h.account.headers).json()
    by_id = {m["id"]: m for m in models["models"]}
    assert by_id["anthropic/claude-haiku-4.5"]["available"] is False
    assert by_id["openai/gpt-5.4"]["available"] is True
    assert models["defaultModelId"] == h.settings.default_model


def test_headless_runs(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script([ToolCalls([Call("bash", {"command": "echo headless"})]), Text("done")])
    r = h.client.post(
        "/api/chat/runs", json={"prompt": "do it", "model": model}, headers=h.account.headers
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert set(accepted) == {"runId", "chatId", "sessionId"}
    run = h.wait_run(accepted["runId"], timeout=90)
    assert run["status"] == "completed", run
    assert run["toolCalls"] == 1 and run["model"] == model
    detail = h.chat(accepted["sessionId"], accepted["chatId"])
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["chat"]["title"] == "do it"
    # Nobody is there to answer a client tool, so a headless run is not offered one.
    offered = {t["function"]["name"] for t in h.model.requests(model.split("/", 1)[1])[0]["tools"]}
    assert "ask_user_question" not in offered and "bash" in offered
    # Bad bodies: 400, nothing started.
    for body in ({}, {"prompt": "x", "messages": []}, {"prompt": ""}, {"prompt": 1, "bogus": 1}):
        r = h.client.post("/api/chat/runs", json=body, headers=h.account.headers)
        assert r.status_code == 400, (body, r.text)


@pytest.mark.parametrize(
    "limit",
    [{"agent_worker_concurrency": 1}, {"agent_global_concurrency": 1}],
    ids=["in-process", "global-queue"],
)
def test_turns_queue_beyond_the_worker_concurrency(
    agents: AgentsFactory, limit: dict[str, int]
) -> None:
    """Without a global limit the accepting process holds the overflow; with one, the DBOS
    queue does. Either way the second turn waits, then runs."""
    h = agents(**limit)
    created = h.new_session()
    sid, chat_a = created["session"]["id"], created["chat"]["id"]
    chat_b = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    slow = h.script([ToolCalls([Call("bash", {"command": "sleep 1.5"})]), Text("A")])
    quick = h.script([Text("B")])
    a = Background(h, sid, chat_a, "a", slow)
    a.wait_for("tool-input-available")
    b = Background(h, sid, chat_b.json()["chat"]["id"], "b", quick)
    b.started.wait(10)
    run_b = b.headers["x-workflow-run-id"]
    assert h.run(run_b)["status"] == "queued"  # one turn at a time in this process
    assert text_of(b.chunks()) == "B"
    assert text_of(a.chunks()) == "A"
    assert h.run(run_b)["status"] == "completed"


def test_a_reply_marks_the_chat_unread_until_read(agents: AgentsFactory) -> None:
    h = agents()
    sid, chat_id = _session(h)
    h.turn(sid, chat_id, "hi", model=h.script([Text("hello")]))
    listing = h.client.get(f"/api/sessions/{sid}/chats", headers=h.account.headers).json()
    assert [c["hasUnread"] for c in listing["chats"]] == [True]
    h.client.post(f"/api/sessions/{sid}/chats/{chat_id}/read", headers=h.account.headers)
    listing = h.client.get(f"/api/sessions/{sid}/chats", headers=h.account.headers).json()
    assert [c["hasUnread"] for c in listing["chats"]] == [False]


def test_a_turn_whose_workflow_fails_unexpectedly_releases_the_chat(
    agents: AgentsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error nothing in the turn handles (here the run record's final write, in ``_finish``)
    ends the DBOS workflow for good: the run is recorded failed and the chat is free again."""
    h = agents()
    real_finish_run = store.finish_run
    calls: list[str] = []

    def failing_once(db: Any, run_id: str, **fields: Any) -> None:
        calls.append(run_id)
        if len(calls) == 1:
            raise RuntimeError("injected failure of the run's final write")
        real_finish_run(db, run_id, **fields)

    monkeypatch.setattr(store, "finish_run", failing_once)
    model = h.script([Text("first"), Text("second")])
    sid, chat_id = _session(h)
    chunks, headers = h.turn(sid, chat_id, "one", model=model)
    assert text_of(chunks) == "first"  # streamed before the failure
    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "failed"
    assert "injected failure" in run["error"]
    assert h.chat(sid, chat_id)["chat"]["activeStreamId"] is None
    chunks, headers = h.turn(sid, chat_id, "two", model=model)  # not a 409
    check_protocol(chunks)
    assert text_of(chunks) == "second"
    assert h.run(headers["x-workflow-run-id"])["status"] == "completed"
