"""``agent-sessions chat``: the terminal client, against a real ``serve`` subprocess with real
sandboxes and the scripted stand-in model; plus the stream reader it uses (the client
library's) and its renderer on recorded chunks (no network).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from agent_sessions.client import Client, RetryPolicy, StreamDropped
from agent_sessions.client.streams import parse_sse
from agent_sessions.terminal.render import Renderer, tool_header
from tests.conftest import CLI, Server
from tests.support.model_server import (
    Call,
    ModelServer,
    Text,
    ToolCalls,
    echo_last_tool_result,
)
from tests.support.served import create_account, serve_with_stand_in

# --- a recorded turn: what the server streams for "run it" (bash, then text) ------------------

RECORDED: list[dict[str, Any]] = [
    {"type": "start", "messageId": "m1"},
    {"type": "data-sandbox", "id": "sandbox", "data": {"state": "restoring"}},
    {"type": "data-sandbox", "id": "sandbox", "data": {"state": "active"}},
    {"type": "start-step"},
    {"type": "reasoning-start", "id": "r1"},
    {"type": "reasoning-delta", "id": "r1", "delta": "Let me look."},
    {"type": "reasoning-end", "id": "r1"},
    {"type": "tool-input-start", "toolCallId": "c1", "toolName": "bash"},
    {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"command":'},
    {
        "type": "tool-input-available",
        "toolCallId": "c1",
        "toolName": "bash",
        "input": {"command": "seq 20"},
    },
    {
        "type": "tool-output-available",
        "toolCallId": "c1",
        "output": {
            "exitCode": 0,
            "stdout": "".join(f"{i}\n" for i in range(1, 21)),
            "stderr": "",
        },
    },
    {"type": "tool-input-start", "toolCallId": "c2", "toolName": "read"},
    {
        "type": "tool-input-available",
        "toolCallId": "c2",
        "toolName": "read",
        "input": {"filePath": "missing.txt"},
    },
    {"type": "tool-output-error", "toolCallId": "c2", "errorText": "missing.txt: no such file"},
    {"type": "finish-step"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "All "},
    {"type": "text-delta", "id": "t1", "delta": "done."},
    {"type": "text-end", "id": "t1"},
    {"type": "finish-step"},
    {"type": "error", "errorText": "something odd"},
    {
        "type": "message-metadata",
        "messageMetadata": {"usage": {"inputTokens": 120, "outputTokens": 7}},
    },
    {"type": "finish", "finishReason": "stop"},
]

RENDERED = """\
restoring sandbox…
sandbox ready
Let me look.
⏺ bash(command="seq 20")
  ⎿  exit 0
     1
     2
     3
     4
     … 12 more lines
     17
     18
     19
     20
⏺ read(filePath="missing.txt")
  ⎿  error: missing.txt: no such file
All done.
error: something odd
— 120 input · 7 output tokens
"""


def _sse_body(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def test_renderer_on_a_recorded_stream() -> None:
    out = io.StringIO()
    renderer = Renderer(Console(file=out, force_terminal=False, highlight=False, soft_wrap=True))
    for chunk in parse_sse(_sse_body(RECORDED).decode().split("\n")):
        renderer.feed(chunk)
    assert out.getvalue() == RENDERED


def test_renderer_on_a_terminal_renders_markdown() -> None:
    """On a terminal: the text as markdown (no ``**`` left, the code highlighted), and a
    spinner with the elapsed time while the tool runs, erased once output comes."""
    out = io.StringIO()
    renderer = Renderer(Console(file=out, force_terminal=True, width=60, color_system="standard"))
    text = "Here is **bold**:\n\n```python\nprint('hi')\n```\n"
    turn = [
        *RECORDED[7:11],
        {"type": "text-start", "id": "t"},
        {"type": "text-delta", "id": "t", "delta": text[:20]},
        {"type": "text-delta", "id": "t", "delta": text[20:]},
        {"type": "text-end", "id": "t"},
        {"type": "finish", "finishReason": "stop"},
    ]
    for chunk in parse_sse(_sse_body(turn).decode().split("\n")):
        renderer.feed(chunk)
    renderer.newline()
    shown = out.getvalue()
    assert "running bash… 0s" in shown
    assert "\x1b[1mbold\x1b[0m" in shown and "**" not in shown
    assert "```" not in shown and "\x1b[92;40mprint" in shown  # a highlighted code block
    assert shown.endswith("\x1b[2K")  # the last spinner erased (transient)


def test_a_running_command_shows_its_last_lines_under_the_spinner() -> None:
    out = io.StringIO()
    renderer = Renderer(Console(file=out, force_terminal=True, width=60, color_system="standard"))
    lines = "".join(f"compiling {i}.c\n" for i in range(1, 10))
    turn = [
        *RECORDED[7:10],
        {"type": "tool-output-available", "toolCallId": "c1", "preliminary": True,
         "output": {"stdout": lines, "stderr": "warning: w\n", "running": True}},
        RECORDED[10],
    ]  # fmt: skip
    for chunk in parse_sse(_sse_body(turn).decode().split("\n")):
        renderer.feed(chunk)
    renderer.newline()
    shown = out.getvalue()
    frame = shown[: shown.index("exit 0")]  # before the result
    assert "running bash…" in frame and "compiling 5.c" in frame  # the last six lines
    assert "compiling 4.c" not in shown and "warning: w" in frame
    assert shown.endswith("\x1b[2K")  # erased with the spinner once the result came


def test_tool_headers_show_the_key_argument() -> None:
    edit = {"filePath": "a.py", "oldString": "x" * 500, "newString": "y"}
    assert tool_header("edit", edit) == 'edit(filePath="a.py")'
    assert tool_header("bash", {"command": "ls", "cwd": "src"}) == 'bash(command="ls")'
    assert tool_header("mcp_thing", {"a": 1, "b": "c"}) == 'mcp_thing(a=1, b="c")'


def test_parse_sse_framing() -> None:
    lines = ['data: {"type":"start"}', "", ": a comment", 'data: {"type":', 'data: "finish"}', ""]
    chunks = parse_sse([*lines, "data: [DONE]", "", "data: ignored", ""])
    assert [c.to_dict() for c in chunks] == [{"type": "start"}, {"type": "finish"}]
    # An event cut off before its blank line is not a chunk: the stream counts as dropped.
    got: list[dict[str, Any]] = []
    with pytest.raises(StreamDropped):
        got.extend(c.to_dict() for c in parse_sse(['data: {"type":"start"}', "", 'data: {"ty']))
    assert got == [{"type": "start"}]


FAST = RetryPolicy(resume_backoff=0.001)


def test_a_dropped_stream_resumes_from_the_chunks_received() -> None:
    """The stream ends after two chunks ([DONE] but no ``finish``); the reader asks for the
    rest from index 2, then that connection dies mid-event and it asks again from index 5."""
    resumes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/chat":
            assert json.loads(request.content)["messages"][0]["parts"][0]["text"] == "hi"
            return httpx.Response(200, content=_sse_body(RECORDED[:2]))
        assert request.url.path == "/api/chat/c1/stream"
        resumes.append(request.url.params["startIndex"])
        if len(resumes) == 1:  # the first resume drops too, mid-way through an event
            body = _sse_body(RECORDED[2:5], done=False) + b'data: {"type":'
            return httpx.Response(200, content=body)
        return httpx.Response(200, content=_sse_body(RECORDED[5:]))

    retries: list[int] = []
    api = Client(
        "http://server", "k", transport=httpx.MockTransport(handler), retry=FAST,
        on_resume=lambda n, _: retries.append(n),
    )  # fmt: skip
    chunks = [c.to_dict() for c in api.send_message("s1", "c1", "hi")]
    assert chunks == RECORDED
    assert resumes == ["2", "5"]
    assert retries == [1, 1]

    # Nothing live when we come back (204): the turn ended while we were away.
    def ended(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, content=_sse_body(RECORDED[:3], done=False))
        return httpx.Response(204)

    api = Client("http://server", "k", transport=httpx.MockTransport(ended), retry=FAST)
    stream = api.send_message("s1", "c1", "hi")
    assert [c.to_dict() for c in stream] == RECORDED[:3]
    assert not stream.finished


def _chat_env(
    url: str | None = None, key: str | None = None, state: Path | None = None
) -> dict[str, str]:
    """The client's environment; ``state`` is where it remembers the last session (by default
    a fresh directory: each run starts a new session)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SESSIONS_")}
    env["XDG_STATE_HOME"] = str(state or tempfile.mkdtemp(prefix="chat-state-", dir="/tmp"))
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    if url:
        env["AGENT_SESSIONS_URL"] = url
    if key:
        env["AGENT_SESSIONS_API_KEY"] = key
    return env


def test_missing_api_key_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [CLI, "chat"], env=_chat_env(), input="", capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("error: no API key")


# --- end to end ---------------------------------------------------------------------------------


class Interactive:
    """A running client: what it printed so far, and a way to wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.stdin = proc.stdin
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout
        self.reader = threading.Thread(target=lambda: [self._lines.put(x) for x in stdout])
        self.reader.start()

    def send(self, text: str) -> None:
        self.stdin.write(text)
        self.stdin.flush()

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + 90
        while not any(text in line for line in self.seen):
            self.seen.append(self._lines.get(timeout=max(0.1, deadline - time.monotonic())))

    def finish(self) -> str:
        """Close stdin, wait for a clean exit; the whole transcript."""
        self.stdin.close()
        assert self.proc.wait(timeout=60) == 0
        self.reader.join(10)
        while not self._lines.empty():
            self.seen.append(self._lines.get())
        return "".join(self.seen)


@dataclass
class Served:
    server: Server
    key: str
    model: ModelServer

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def script(self, steps: list[Any]) -> str:
        name = f"script-{uuid.uuid4().hex[:10]}"
        self.model.script(name, steps)
        return f"openai/{name}"

    def chat(
        self, *args: str, stdin: str, key: str | None = None, state: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "chat", *args],
            env=_chat_env(self.server.url, key or self.key, state),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )

    @contextlib.contextmanager
    def interactive(self, *args: str, state: Path | None = None) -> Iterator[Interactive]:
        """The client running, its output read line by line as it comes."""
        with subprocess.Popen(
            [CLI, "chat", *args],
            env=_chat_env(self.server.url, self.key, state),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as proc:
            session = Interactive(proc)
            try:
                yield session
            finally:
                if proc.poll() is None:
                    proc.kill()
                session.reader.join(10)

    def new_session(self) -> tuple[str, str]:
        r = httpx.post(f"{self.server.url}/api/sessions", json={}, headers=self.headers)
        assert r.status_code == 200, r.text
        sid, chat_id = r.json()["session"]["id"], r.json()["chat"]["id"]
        deadline = time.monotonic() + 120
        while True:
            r = httpx.get(f"{self.server.url}/api/sessions/{sid}/sandbox", headers=self.headers)
            if r.json()["lifecycleState"] == "active":
                return sid, chat_id
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """A real ``serve`` on a fresh SQLite database, sandboxes on, the stand-in as its model."""
    with serve_with_stand_in("agent-sessions-chat-", uid_offset=50, uid_count=50) as (srv, model):
        yield Served(srv, create_account(srv, "chat"), model)


def test_chat_runs_a_tool_and_shows_the_answer(served: Served) -> None:
    model = served.script([ToolCalls([Call("bash", {"command": "echo hi"})]), Text("done")])
    proc = served.chat("--model", model, stdin="run it\n/exit\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out  # plain when stdout is not a terminal
    lines = out.splitlines()
    assert lines[0].startswith("session ")
    assert "sandbox ready" in lines
    header = lines.index('⏺ bash(command="echo hi")')
    assert lines[header + 1 : header + 3] == ["  ⎿  exit 0", "     hi"]
    assert lines[header + 3] == "done"
    footer = lines[header + 4]
    assert footer.startswith("— ") and footer.endswith(" output tokens"), footer
    assert proc.stderr == ""


def test_chat_answers_the_agents_question(served: Served) -> None:
    question = {"question": "Which color?", "options": [{"label": "red"}, {"label": "blue"}]}
    model = served.script(
        [ToolCalls([Call("ask_user_question", {"questions": [question]})]), echo_last_tool_result]
    )
    proc = served.chat("--model", model, stdin="ask me\n2\n/exit\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Which color?" in lines and "  2. blue" in lines
    assert any("blue" in line and "answers" in line for line in lines[lines.index("  2. blue") :])


def test_chat_attaches_to_a_live_turn_on_409(served: Served) -> None:
    """A turn already running in the chat (here a headless one): the client offers to attach and
    shows that turn from its first chunk."""
    sid, chat_id = served.new_session()
    gate = threading.Event()  # the turn stays live until the client has met it
    model = served.script([Text("slow answer", chunks=4, hold=gate)])
    r = httpx.post(
        f"{served.server.url}/api/chat/runs",
        json={"sessionId": sid, "chatId": chat_id, "prompt": "go", "model": model},
        headers=served.headers,
    )
    assert r.status_code == 202, r.text
    with served.interactive("--session", sid) as cli:
        cli.send("another\ny\n")
        cli.wait_for("(your message was not sent)")
        gate.set()
        cli.wait_for("output tokens")
        cli.send("/exit\n")
        lines = cli.finish().splitlines()
    assert any(line.startswith("error: ") and "already" in line for line in lines), lines
    answer = next(i for i, line in enumerate(lines) if line.endswith("slow answer"))
    assert lines[answer + 1].endswith(" output tokens")


def test_ctrl_c_stops_the_turn_and_returns_to_the_prompt(served: Served) -> None:
    sid, chat_id = served.new_session()
    model = served.script([ToolCalls([Call("bash", {"command": "sleep 60"})]), Text("never")])
    with served.interactive("--session", sid, "--chat", chat_id, "--model", model) as cli:
        cli.send("sleep please\n")
        cli.wait_for('⏺ bash(command="sleep 60")')
        cli.proc.send_signal(signal.SIGINT)
        cli.wait_for("stopped")
        cli.send("/exit\n")
        transcript = cli.finish()
    r = httpx.get(f"{served.server.url}/api/sessions/{sid}/chats/{chat_id}", headers=served.headers)
    assert r.json()["isStreaming"] is False
    stopped = transcript.index("stopping…\nstopped\n")
    # the call's outcome as the server stored it, under the call, then the prompt again
    assert "  ⎿  error: Cancelled by the user\n" in transcript[stopped:]
    assert transcript.endswith("> /exit\n")
    assert "never" not in transcript


def test_a_wrong_api_key_exits_2_with_one_line(served: Served) -> None:
    proc = served.chat(stdin="", key="ask_wrong")
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("error: the server refused the API key")


def _session_of(out: str) -> str:
    first = out.splitlines()[0]
    assert first.startswith("session "), out
    return first.split()[1]


def test_slash_commands_are_handled_locally(served: Served) -> None:
    """Commands never reach the model: the stand-in sees the one real message only."""
    model = served.script([Text("hello back")])
    name = model.removeprefix("openai/")
    stdin = "/help\n/bogus\n/model\nhello\n/sessions\n/diff\n/model openai/other\n/model\n/quit\n"
    proc = served.chat("--model", model, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    out, lines = proc.stdout, proc.stdout.splitlines()
    sid = _session_of(out)
    assert any(line.startswith("  /switch ID") for line in lines)
    assert "unknown command /bogus; /help lists them" in lines
    assert f"model: {model}" in lines
    assert "hello back" in lines
    assert any(line.startswith(f"* {sid}  ") for line in lines)  # /sessions marks this one
    assert any(line.startswith("0 files changed") for line in lines), out
    assert "model set to openai/other" in lines and lines[-2] == "model: openai/other"
    requests = served.model.requests(name)
    assert len(requests) == 1
    sent = json.dumps(requests[0]["messages"])
    assert "hello" in sent and "/help" not in sent and "/model" not in sent
    r = httpx.get(f"{served.server.url}/api/sessions/{sid}/chats", headers=served.headers)
    assert r.json()["chats"][0]["modelId"] == "openai/other"


def test_the_last_session_is_resumed_with_its_history(served: Served, tmp_path: Path) -> None:
    model = served.script([Text("the first answer")])
    first = served.chat("--model", model, stdin="first question\n/exit\n", state=tmp_path)
    assert first.returncode == 0, first.stderr
    sid = _session_of(first.stdout)

    again = served.chat(stdin="/exit\n", state=tmp_path)  # no --session: the last one
    assert again.returncode == 0, again.stderr
    assert _session_of(again.stdout) == sid
    lines = again.stdout.splitlines()
    question = lines.index("> first question")
    assert lines[question + 1] == "the first answer"

    fresh = served.chat("--new", stdin="/exit\n", state=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    new_sid = _session_of(fresh.stdout)
    assert new_sid != sid and "> first question" not in fresh.stdout
    latest = served.chat(stdin="/exit\n", state=tmp_path)
    assert _session_of(latest.stdout) == new_sid  # --new is remembered as the last one

    # --session shows the conversation too, whatever was used last.
    shown = served.chat("--session", sid, stdin="/exit\n")
    assert "> first question" in shown.stdout and "the first answer" in shown.stdout


def test_switch_and_new_change_the_session(served: Served, tmp_path: Path) -> None:
    sid, _ = served.new_session()
    proc = served.chat("--new", stdin=f"/switch {sid}\n/exit\n", state=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"session {sid}  " in proc.stdout
    resumed = served.chat(stdin="/exit\n", state=tmp_path)
    assert _session_of(resumed.stdout) == sid


def test_a_stopped_turn_keeps_its_partial_output(served: Served) -> None:
    """Ctrl-C mid-tool: what the turn showed stays on screen, and the stored message keeps the
    call, so ``--session`` shows it again."""
    sid, chat_id = served.new_session()
    command = "echo partial-output; sleep 60"
    model = served.script([ToolCalls([Call("bash", {"command": command})]), Text("never")])
    header = f"⏺ bash(command={json.dumps(command)})"
    with served.interactive("--session", sid, "--chat", chat_id, "--model", model) as cli:
        cli.send("go\n")
        cli.wait_for(header)
        _wait_for_shown_output(served, chat_id, "partial-output")
        cli.proc.send_signal(signal.SIGINT)
        cli.wait_for("stopped")
        cli.send("/exit\n")
        transcript = cli.finish()
    assert header in transcript
    shown = served.chat("--session", sid, stdin="/exit\n")
    lines = shown.stdout.splitlines()
    call = lines.index(header)
    assert lines[call - 1] == "> go"
    assert lines[call + 1] == "  ⎿  error: Cancelled by the user"
    # what the command had shown before the stop, kept with the error
    assert lines[call + 2 : call + 4] == ["     Its output before it ended:", "     partial-output"]


def _wait_for_shown_output(served: Served, chat_id: str, text: str) -> None:
    """Until the live turn's stream has shown ``text`` as a running command's output."""
    url = f"{served.server.url}/api/chat/{chat_id}/stream"
    with httpx.stream("GET", url, headers=served.headers, timeout=60) as r:
        for line in r.iter_lines():
            if '"preliminary":true' in line.replace(" ", "") and text in line:
                return
    raise AssertionError(f"the stream ended without showing {text!r}")


def test_stop_at_the_prompt_stops_the_chats_turn(served: Served) -> None:
    """A turn running in the chat (here a headless one) is announced, and /stop stops it."""
    sid, chat_id = served.new_session()
    gate = threading.Event()
    model = served.script([Text("held", hold=gate)])
    r = httpx.post(
        f"{served.server.url}/api/chat/runs",
        json={"sessionId": sid, "chatId": chat_id, "prompt": "go", "model": model},
        headers=served.headers,
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while not served.model.requests(model.removeprefix("openai/")):  # the turn is under way
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        proc = served.chat("--session", sid, stdin="/stop\n/exit\n")
    finally:
        gate.set()
    assert proc.returncode == 0, proc.stderr
    assert "a turn is running in this chat; /stop stops it" in proc.stdout
    assert "stopping…\nstopped\n" in proc.stdout
    r = httpx.get(f"{served.server.url}/api/sessions/{sid}/chats/{chat_id}", headers=served.headers)
    assert r.json()["isStreaming"] is False
