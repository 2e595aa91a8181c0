"""The Python client library (``agent_sessions.client``) against a real ``serve`` subprocess over
real HTTP, with real sandboxes and the scripted stand-in model; its retries against a tiny local
HTTP stand-in (the real server does not answer 503 on demand)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sessions.api import schemas
from agent_sessions.client import (
    AsyncClient,
    BadGatewayError,
    BadRequestError,
    Chunk,
    Client,
    ConflictError,
    DataChunk,
    ErrorChunk,
    FinishChunk,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServiceUnavailableError,
    StartChunk,
    TextDeltaChunk,
    ToolApprovalRequestChunk,
    ToolInputAvailableChunk,
    ToolInputDeltaChunk,
    ToolOutputAvailableChunk,
    UnauthorizedError,
    UnknownChunk,
    UnprocessableEntityError,
    parse_chunk,
)
from agent_sessions.client.routes import Routes
from tests.conftest import Server
from tests.support.model_server import Call, ModelServer, Text, ToolCalls
from tests.support.served import create_account, serve_with_stand_in

FAST = RetryPolicy(backoff=0.001, resume_backoff=0.001)
"""The default policy's decisions, without its waits."""


# --- a real server ------------------------------------------------------------------------------


@dataclass
class Served:
    server: Server
    alice: str
    bob: str
    model: ModelServer

    @property
    def url(self) -> str:
        return self.server.url

    def script(self, steps: list[Any]) -> str:
        name = f"script-{uuid.uuid4().hex[:10]}"
        self.model.script(name, steps)
        return f"openai/{name}"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """A real ``serve`` on a fresh SQLite database, sandboxes on, the stand-in as its model."""
    with serve_with_stand_in("agent-sessions-client-", uid_offset=140) as (srv, model):
        yield Served(srv, create_account(srv, "alice"), create_account(srv, "bob"), model)


def _active_session(client: Client) -> tuple[str, str]:
    """A new session whose sandbox is active; its id and its first chat's."""
    created = client.create_session(title="client test")
    deadline = time.monotonic() + 120
    while client.sandbox_state(created.session.id).lifecycle_state != "active":
        assert time.monotonic() < deadline, "the sandbox did not become active"
        time.sleep(0.1)
    return created.session.id, created.chat.id


# --- the library itself -------------------------------------------------------------------------


def test_importing_the_client_loads_no_server_code() -> None:
    heavy = ("fastapi", "starlette", "sqlalchemy", "dbos", "pydantic_ai", "psycopg", "uvicorn")
    code = (
        "import sys, agent_sessions.client; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('agent_sessions'))))"
        f"; print('\\n'.join(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [m for m in out if m.split(".")[0] in heavy]
    service = {m.split(".")[1] for m in out if m.count(".")}
    assert service <= {"client", "api", "approval_rules", "exceptions", "settings", "workspace"}
    assert {m for m in out if m.startswith("agent_sessions.api.")} == {"agent_sessions.api.schemas"}


def test_unknown_and_malformed_chunks_come_through() -> None:
    data = parse_chunk('{"type":"data-foo","id":"x","data":{"n":1}}')
    assert isinstance(data, DataChunk) and data.name == "foo" and data.data == {"n": 1}
    new = parse_chunk('{"type":"brand-new","someField":[1,2]}')
    assert isinstance(new, UnknownChunk)
    assert new.to_dict() == {"type": "brand-new", "someField": [1, 2]}
    short = parse_chunk('{"type":"text-delta"}')  # a known type without its fields
    assert isinstance(short, UnknownChunk) and short.to_dict() == {"type": "text-delta"}
    assert isinstance(parse_chunk('{"type": 5}'), UnknownChunk)
    assert isinstance(parse_chunk("not json"), ErrorChunk)
    assert isinstance(parse_chunk("[1]"), ErrorChunk)
    delta = parse_chunk('{"type":"text-delta","id":"t","delta":"hi","extra":true}')
    assert isinstance(delta, TextDeltaChunk) and delta.delta == "hi"
    assert delta.to_dict() == {"type": "text-delta", "id": "t", "delta": "hi", "extra": True}


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.5, max_backoff=1.0, max_retry_after=10)
    assert policy.delay(0, wait=3.0) == 3.0  # Retry-After as given
    assert policy.delay(0, wait=11.0) is None  # too long: raised, not waited out
    assert 0.25 <= (policy.delay(0) or 0) <= 0.5
    assert 0.5 <= (policy.delay(1) or 0) <= 1.0
    assert policy.delay(2) is None  # no retries left


def test_a_stream_resumed_from_the_end_counts_from_the_tail_index() -> None:
    """``startIndex=-2``: the last two chunks written; a drop then resumes at their end."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["startIndex"])
        if len(asked) > 1:
            return httpx.Response(204)
        body = b'data: {"type":"start-step"}\n\ndata: {"type":"text-start","id":"t"}\n\n'
        return httpx.Response(200, content=body, headers={"x-workflow-stream-tail-index": "9"})

    with Client("http://server", "k", transport=httpx.MockTransport(handler), retry=FAST) as c:
        stream = c.resume_stream("c1", -2)
        assert stream is not None and stream.index == 8
        assert [chunk.type for chunk in stream] == ["start-step", "text-start"]
    assert asked == ["-2", "10"] and stream.index == 10 and not stream.finished


# --- routes -------------------------------------------------------------------------------------


def test_every_route_of_the_openapi_document_is_a_method(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert Routes.operations() == documented


def test_sessions_chats_and_account(served: Served) -> None:
    with Client(served.url, served.alice, retry=FAST) as client:
        assert client.health().status == "ok"
        created = client.create_session(schemas.SessionCreate(title="first"))
        sid = created.session.id
        assert isinstance(created.session, schemas.Session)
        assert client.get_session(sid).title == "first"
        assert client.update_session(sid, title="renamed").title == "renamed"
        listed = client.list_sessions(status="all", limit=100)
        assert sid in [s.id for s in listed.sessions]

        chat = client.create_chat(sid, "my-chat")
        assert client.create_chat(sid, "my-chat").id == chat.id  # idempotent with its id
        assert client.update_chat(sid, chat.id, {"title": "named"}).title == "named"
        assert {c.id for c in client.list_chats(sid).chats} == {created.chat.id, chat.id}
        detail = client.get_chat(sid, chat.id)
        assert detail.messages == [] and not detail.is_streaming
        assert client.mark_chat_read(sid, chat.id) is None
        assert client.chat_usage(sid, chat.id).usage.runs == 0
        assert client.delete_chat(sid, chat.id) is None

        models = client.list_models()
        assert client.get_default_model().model_id == models.default_model_id
        assert client.usage(group_by="model").group_by == "model"
        assert isinstance(client.forge_token_status(), schemas.ForgeTokenStatus)
        client.delete_session(sid)
        with pytest.raises(NotFoundError):
            client.get_session(sid)


def test_error_statuses_raise_their_classes(served: Served) -> None:
    with Client(served.url, served.alice, retry=FAST) as alice:
        with pytest.raises(NotFoundError) as missing:
            alice.get_session("no-such-session")
        assert missing.value.status == 404
        assert missing.value.error is not None and missing.value.error.status == "error"

        sid = alice.create_session().session.id
        with Client(served.url, served.bob, retry=FAST) as bob, pytest.raises(ForbiddenError):
            bob.get_session(sid)

        with pytest.raises(BadRequestError) as bad:
            alice.update_session(sid, status="bogus")
        assert bad.value.path == ["body", "status"]
        assert "status" in bad.value.message
        with pytest.raises(BadRequestError):
            alice.create_session(title="")  # validated by the server, with its model

    with Client(served.url, "ask_wrong", retry=FAST) as stranger:
        with pytest.raises(UnauthorizedError):
            stranger.list_sessions()
        assert stranger.health().status == "ok"  # no key needed


def test_a_turn_streams_typed_chunks_to_its_finish(served: Served) -> None:
    model = served.script([ToolCalls([Call("bash", {"command": "echo hi"})]), Text("done")])
    with Client(served.url, served.alice, retry=FAST) as client:
        sid, chat_id = _active_session(client)
        with client.send_message(sid, chat_id, "run it", model=model) as stream:
            chunks = list(stream)
        assert isinstance(chunks[0], StartChunk)
        assert isinstance(chunks[-1], FinishChunk) and stream.finished
        assert stream.index == len(chunks)
        call = next(c for c in chunks if isinstance(c, ToolInputAvailableChunk))
        assert (call.tool_name, call.input) == ("bash", {"command": "echo hi"})
        output = next(c for c in chunks if isinstance(c, ToolOutputAvailableChunk))
        assert output.tool_call_id == call.tool_call_id
        assert output.output["exitCode"] == 0 and output.output["stdout"] == "hi\n"
        assert _text(chunks) == "done"

        assert stream.run_id is not None
        deadline = time.monotonic() + 60
        while (run := client.get_run(stream.run_id)).status not in ("completed", "failed"):
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        assert run.status == "completed" and run.text == "done"
        assert client.resume_stream(chat_id) is None  # no turn is live: 204
        stored = client.get_chat(sid, chat_id).messages
        assert [m.role for m in stored] == ["user", "assistant"]

        # the workspace the turn ran in
        assert client.upload_file(sid, "notes/a.txt", b"hello\n").size == 6
        assert client.read_file(sid, "notes/a.txt").content == "hello\n"
        assert client.download_file(sid, "notes/a.txt") == b"hello\n"
        assert [e.path for e in client.list_files(sid, "notes").entries] == ["notes/a.txt"]
        assert client.download_archive(sid, format="zip").startswith(b"PK")


def test_an_approval_is_answered_and_the_turn_goes_on(served: Served) -> None:
    model = served.script([ToolCalls([Call("bash", {"command": "echo ok"})]), Text("it ran")])
    with Client(served.url, served.alice, retry=FAST) as client:
        sid, chat_id = _active_session(client)
        rule = {"tool": "bash"}  # no "match": every call (it once made the route answer 500)
        rules = client.update_chat(sid, chat_id, approval_rules=[rule]).approval_rules
        assert [r.tool for r in rules] == ["bash"]
        with client.send_message(sid, chat_id, "run it", model=model) as asking:
            chunks = list(asking)
        request = next(c for c in chunks if isinstance(c, ToolApprovalRequestChunk))
        end = chunks[-1]
        assert isinstance(end, FinishChunk) and end.finish_reason == "tool-calls"
        assert asking.paused and asking.index == len(chunks) - 1  # that finish is not the run's
        pending = client.get_chat(sid, chat_id).pending_approvals
        assert [p.approval_id for p in pending] == [request.approval_id]

        with client.answer_approvals(
            sid, chat_id, {request.approval_id: True}, start_index=asking.index
        ) as rest:
            more = list(rest)
        assert isinstance(more[0], StartChunk) and rest.finished and not rest.paused
        assert rest.index == asking.index + len(more) - 1  # its start is not the run's either
        ran = next(c for c in more if isinstance(c, ToolOutputAvailableChunk))
        assert ran.tool_call_id == request.tool_call_id and ran.output["stdout"] == "ok\n"
        assert _text(more) == "it ran"
        assert not any(isinstance(c, ToolApprovalRequestChunk) for c in more)


def _text(chunks: list[Chunk]) -> str:
    return "".join(c.delta for c in chunks if isinstance(c, TextDeltaChunk))


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_examples_run(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text()
    section = text[text.index("### Python client") :]
    section = section[: section.index("\n### ")]
    blocks = [b.split("```")[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2  # sync, async
    for block in blocks:
        code = block.replace("http://127.0.0.1:8000", served.url)
        exec(compile(code, "README.md", "exec"), {"KEY": served.alice, "__name__": "readme"})  # noqa: S102
    out = capsys.readouterr().out
    assert "[write]" in out and "[bash]" in out  # the demo model's tool calls
    assert "print(" in out  # hello.py, read back
    assert "404 Session not found" in out


# --- a dropped connection -----------------------------------------------------------------------

CUT_AFTER = 4
"""Chunks of the first response read before its connection is cut: fewer than the turn writes
before its second model call, which waits for the test (so the cut always falls mid-turn)."""


def _events(buffer: bytearray) -> Iterator[bytes]:
    """Complete SSE events taken off the front of ``buffer``."""
    while (end := buffer.find(b"\n\n")) >= 0:
        event = bytes(buffer[: end + 2])
        del buffer[: end + 2]
        yield event


class _CutStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, after: int) -> None:
        self.inner, self.after = inner, after

    def __iter__(self) -> Iterator[bytes]:
        buffer, sent = bytearray(), 0
        for piece in self.inner:
            buffer += piece
            for event in _events(buffer):
                yield event
                sent += event.startswith(b"data:")
                if sent == self.after:
                    raise httpx.ReadError("connection cut by the test")

    def close(self) -> None:
        self.inner.close()


class _AsyncCutStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, after: int) -> None:
        self.inner, self.after = inner, after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer, sent = bytearray(), 0
        async for piece in self.inner:
            buffer += piece
            for event in _events(buffer):
                yield event
                sent += event.startswith(b"data:")
                if sent == self.after:
                    raise httpx.ReadError("connection cut by the test")

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Cuts:
    """What both cutting transports share: the first turn response is cut; a resume request
    releases the held model reply (``gate``) and is recorded."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.resumed_at: list[str] = []
        self.cut = False

    def should_cut(self, request: httpx.Request) -> bool:
        if request.url.path.endswith("/stream"):
            self.resumed_at.append(request.url.params["startIndex"])
            self.gate.set()  # the server is past resolving the stream: let the turn go on
        elif request.url.path == "/api/chat" and not self.cut:
            self.cut = True
            return True
        return False


class CuttingTransport(httpx.HTTPTransport):
    def __init__(self, cuts: _Cuts) -> None:
        super().__init__()
        self.cuts = cuts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not self.cuts.should_cut(request):
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers,
            stream=_CutStream(response.stream, CUT_AFTER), extensions=response.extensions,
        )  # fmt: skip


class AsyncCuttingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, cuts: _Cuts) -> None:
        super().__init__()
        self.cuts = cuts

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not self.cuts.should_cut(request):
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers,
            stream=_AsyncCutStream(response.stream, CUT_AFTER), extensions=response.extensions,
        )  # fmt: skip


def _held_turn(served: Served) -> tuple[str, threading.Event]:
    """A model that calls bash, then waits for the gate before its reply."""
    gate = threading.Event()
    call = Call("bash", {"command": "echo one"})
    model = served.script([ToolCalls([call], chunks=3), Text("second part", chunks=3, hold=gate)])
    return model, gate


def _check_whole_turn(chunks: list[Chunk], cuts: _Cuts, resumes: list[int]) -> None:
    """Every chunk once, in order, though the first connection was cut after CUT_AFTER."""
    assert cuts.resumed_at[0] == str(CUT_AFTER)  # resumed at the next chunk, at the first try
    assert resumes[0] == 1 and set(resumes) == {1}
    kinds = [c.type for c in chunks]
    assert kinds.count("start") == 1 and kinds[0] == "start"
    assert kinds.count("finish") == 1 and kinds[-1] == "finish"
    assert kinds.count("tool-input-available") == 1
    finals = [c for c in chunks if isinstance(c, ToolOutputAvailableChunk) and not c.preliminary]
    assert len(finals) == 1
    arguments = "".join(c.input_text_delta for c in chunks if isinstance(c, ToolInputDeltaChunk))
    assert json.loads(arguments) == {"command": "echo one"}
    assert _text(chunks) == "second part"


def test_a_dropped_stream_resumes_without_loss_or_duplicates(served: Served) -> None:
    model, gate = _held_turn(served)
    cuts = _Cuts(gate)
    resumes: list[int] = []
    with Client(
        served.url, served.alice, retry=FAST, transport=CuttingTransport(cuts),
        on_resume=lambda attempt, _: resumes.append(attempt),
    ) as client:  # fmt: skip
        sid, chat_id = _active_session(client)
        stream = client.send_message(sid, chat_id, "go", model=model)
        with pytest.raises(ConflictError):  # the turn is live (and held)
            client.send_message(sid, chat_id, "another")
        chunks = list(stream)
        assert stream.finished and stream.index == len(chunks)
        _check_whole_turn(chunks, cuts, resumes)
        reply = client.get_chat(sid, chat_id).messages[-1]
        assert [p["text"] for p in reply.parts if p["type"] == "text"] == ["second part"]


def test_the_async_client_streams_resumes_and_raises(served: Served) -> None:
    model, gate = _held_turn(served)
    cuts = _Cuts(gate)
    resumes: list[int] = []

    async def main() -> list[Chunk]:
        async with AsyncClient(
            served.url, served.alice, retry=FAST, transport=AsyncCuttingTransport(cuts),
            on_resume=lambda attempt, _: resumes.append(attempt),
        ) as client:  # fmt: skip
            with pytest.raises(NotFoundError):
                await client.get_session("no-such-session")
            created = await client.create_session(title="async")
            sid, chat_id = created.session.id, created.chat.id
            deadline = time.monotonic() + 120
            while (await client.sandbox_state(sid)).lifecycle_state != "active":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            stream = await client.send_message(sid, chat_id, "go", model=model)
            async with stream:
                chunks = [chunk async for chunk in stream]
            assert stream.finished
            assert (await client.get_chat(sid, chat_id)).messages[-1].role == "assistant"
            return chunks

    _check_whole_turn(asyncio.run(main()), cuts, resumes)


# --- retries, against a stand-in ----------------------------------------------------------------


class StandIn:
    """A tiny HTTP server answering from a script: (method, path) → a queue of answers."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], deque[tuple[int, dict[str, str], bytes]]] = {}
        self.requests: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                key = (self.command, self.path.split("?")[0])
                stand_in.requests.append(key)
                queue = stand_in.answers.get(key)
                status, headers, body = queue.popleft() if queue else (404, {}, b"{}")
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def script(self, method: str, path: str, *answers: tuple[Any, ...]) -> None:
        """Each answer: (status, body) or (status, body, headers); a body is JSON or bytes."""
        queue = self.answers.setdefault((method, path), deque())
        for answer in answers:
            status, body, headers = (*answer, {})[:3]
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            queue.append((status, headers, raw))

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


ERROR = {"status": "error", "error": "try later"}
HEALTH = {"status": "ok", "version": "0"}
ACCEPTED = {"runId": "r1", "chatId": "c1", "sessionId": "s1"}
NOW = {"Retry-After": "0"}


def test_reads_and_safe_posts_are_retried_on_502_and_503(stand_in: StandIn) -> None:
    stand_in.script(
        "GET", "/healthz", (503, ERROR), (502, b"<html>bad gateway</html>"), (200, HEALTH)
    )
    stand_in.script(
        "POST", "/api/chat/c1/stop", (503, ERROR), (200, {"success": True, "stopped": True})
    )
    with Client(stand_in.url, "k", retry=FAST) as client:
        assert client.health().version == "0"
        assert client.stop_turn("c1").stopped
    assert stand_in.count("GET", "/healthz") == 3
    assert stand_in.count("POST", "/api/chat/c1/stop") == 2


def test_a_post_that_could_act_twice_is_not_retried_on_503(stand_in: StandIn) -> None:
    stand_in.script("POST", "/api/chat/runs", (503, ERROR), (202, ACCEPTED))
    with Client(stand_in.url, "k", retry=FAST) as client:
        with pytest.raises(ServiceUnavailableError) as err:
            client.create_run(prompt="hi")
        assert err.value.message == "try later"
    assert stand_in.count("POST", "/api/chat/runs") == 1


def test_429_is_retried_for_every_request_after_retry_after(stand_in: StandIn) -> None:
    stand_in.script("POST", "/api/chat/runs", (429, ERROR, NOW), (202, ACCEPTED))
    stand_in.script("GET", "/healthz", (429, ERROR, {"Retry-After": "3600"}))
    with Client(stand_in.url, "k", retry=FAST) as client:
        assert client.create_run(prompt="hi").run_id == "r1"
        with pytest.raises(RateLimitedError) as limited:  # too long to wait: raised at once
            client.health()
        assert limited.value.retry_after == 3600
    assert stand_in.count("POST", "/api/chat/runs") == 2
    assert stand_in.count("GET", "/healthz") == 1


def test_retries_end_and_other_statuses_raise_at_once(stand_in: StandIn) -> None:
    stand_in.script("GET", "/healthz", *[(502, b"<html>bad gateway</html>")] * 4)
    stand_in.script("GET", "/api/models", (422, {"status": "error", "error": "no", "path": ["x"]}))
    with Client(stand_in.url, "k", retry=RetryPolicy(max_retries=3, backoff=0.001)) as client:
        with pytest.raises(BadGatewayError) as gateway:
            client.health()
        assert gateway.value.error is None and "bad gateway" in gateway.value.message
        with pytest.raises(UnprocessableEntityError) as unprocessable:
            client.list_models()
        assert unprocessable.value.path == ["x"]
    assert stand_in.count("GET", "/healthz") == 4
    assert stand_in.count("GET", "/api/models") == 1


def test_the_async_client_retries_too(stand_in: StandIn) -> None:
    stand_in.script("GET", "/healthz", (503, ERROR), (200, HEALTH))
    stand_in.script("POST", "/api/chat/runs", (502, ERROR))

    async def main() -> None:
        async with AsyncClient(stand_in.url, "k", retry=FAST) as client:
            assert (await client.health()).status == "ok"
            with pytest.raises(BadGatewayError):
                await client.create_run(prompt="hi")

    asyncio.run(main())
    assert stand_in.count("GET", "/healthz") == 2
    assert stand_in.count("POST", "/api/chat/runs") == 1
