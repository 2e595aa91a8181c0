"""A scripted STAND-IN for a hosted LLM, for tests and benchmarks. It is not a model.

Nothing here generates language: the server speaks the OpenAI chat-completions wire protocol
over real HTTP and answers every request from a script that the test registered beforehand, so
an agent (pydantic-ai's OpenAI provider, i.e. the official ``openai`` SDK pointed at
``OPENAI_BASE_URL=http://127.0.0.1:<port>/v1``) can be exercised end to end without a network,
a key, or a bill. Its replies are exactly what the test scripted (and say so: every response
has ``system_fingerprint: "scripted-stand-in"`` and the header ``x-stand-in: scripted``); treat
them as fixtures, never as model behaviour.

Routes: ``POST /v1/chat/completions`` (``stream`` true or false; with
``stream_options.include_usage`` a final usage chunk is sent), ``POST /v1/messages`` (the same
scripts in Anthropic's Messages protocol, streamed as its ``message_start`` …
``message_stop`` events or not: for ``ANTHROPIC_BASE_URL=http://127.0.0.1:<port>``),
``GET /v1/models`` (the script names, OpenAI's list shape; ``server.models_listed()`` tells
who asked, ``server.fail_models(Fail(…))`` makes it an error) and ``GET /healthz``.

Scripts::

    with run_model_server() as server:
        server.script("weather", [ToolCalls([Call("get_weather", {"city": "Paris"})]), Text("Sun")])
        # OpenAI(base_url=server.base_url, api_key="test") ... model="weather"

* The request's ``model`` selects the script by exact name; an unknown name is a 404 in the
  OpenAI error shape ``{"error": {"message", "type", "code"}}``.
* The step answered is chosen from the conversation, not by a cursor: step index = number of
  ``assistant`` messages in the request's ``messages``. A request repeated (a retry, a replay
  after a crash) therefore gets the same answer, tool-call ids included (``call_<step>_<i>``
  unless the script gives one).
* Past the end of the script the last step is answered again if it is a ``Text`` (a callable
  last step is called and its result used if it is a ``Text``); otherwise the reply is the plain
  text ``SCRIPT_EXHAUSTED``.
* A step is ``Text``, ``ToolCalls``, ``Fail`` or a callable ``(request_json) -> Step`` for
  dynamic answers (see ``echo_last_tool_result``). ``Fail`` is an HTTP error; the ``openai`` SDK
  retries 429/5xx by default, and each retry gets the same ``Fail`` (use ``max_retries=0``, or a
  callable with its own state for "fail once, then answer").
* Usage: ``prompt_tokens`` = characters of the request's messages // 4 and
  ``completion_tokens`` = characters of the output // 4, both at least 1. A step's
  ``cached_tokens`` (at most ``prompt_tokens``) is reported as read from the provider's cache:
  ``prompt_tokens_details.cached_tokens`` (part of ``prompt_tokens``), or in Anthropic's protocol
  ``cache_read_input_tokens`` (beside ``input_tokens``, which counts only the rest).
* Every request body (parsed JSON) is recorded under its ``model``: ``server.requests(name)``.
* No latency is added unless a step asks for it (``delay`` before answering,
  ``delay_between_chunks`` while streaming). Without ``delay_between_chunks`` a streamed reply
  is written in one piece (still proper SSE framing, still a chunked ``text/event-stream``).

Manual / subprocess use, from the repository root::

    python -m tests.support.model_server --port 8001 [--scripts scripts.json]

prints ``listening on http://127.0.0.1:<port>/v1`` once ready. ``scripts.json`` maps names to
steps: ``{"name": [{"text": "hi", "chunks": 2}, {"tool_calls": [{"name": "f", "arguments":
{}}]}, {"fail": 500, "message": "boom"}]}``. Two scripts are always there: ``hello`` (answers
"Hello from the stand-in model.") and ``echo`` (answers the last tool result or user message).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "SCRIPT_EXHAUSTED",
    "Call",
    "Fail",
    "ModelServer",
    "ScriptStep",
    "Step",
    "StepFn",
    "Text",
    "ToolCalls",
    "echo_last_tool_result",
    "prompt_tokens_of",
    "run_model_server",
]

SCRIPT_EXHAUSTED = "script exhausted"


@dataclass(frozen=True)
class Text:
    """An assistant text reply, streamed as ``chunks`` deltas (fewer if the text is shorter)."""

    text: str
    chunks: int = 1
    delay: float = 0.0
    delay_between_chunks: float = 0.0
    hold: threading.Event | None = None
    """The reply waits until the test sets this event (not a delay: under load a delay can
    pass before the test has done what it meant to do meanwhile)."""
    cached_tokens: int = 0
    """Prompt tokens the usage reports as read from the cache (see the module's Usage)."""


@dataclass(frozen=True)
class Call:
    """One tool call; ``id`` defaults to ``call_<step>_<index>`` (stable across retries)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """One response with one or several tool calls; each call's arguments JSON is streamed in
    ``chunks`` pieces; ``finish_reason`` is ``"tool_calls"``."""

    calls: Sequence[Call]
    chunks: int = 3
    delay: float = 0.0
    delay_between_chunks: float = 0.0
    hold: threading.Event | None = None
    """As :attr:`Text.hold`."""
    cached_tokens: int = 0
    """As :attr:`Text.cached_tokens`."""


@dataclass(frozen=True)
class Fail:
    """An HTTP error response in the OpenAI error shape."""

    status: int = 500
    message: str = "scripted failure"
    delay: float = 0.0


Step: TypeAlias = Text | ToolCalls | Fail
StepFn: TypeAlias = Callable[[dict[str, Any]], Step]
ScriptStep: TypeAlias = Step | StepFn


def echo_last_tool_result(request: dict[str, Any]) -> Step:
    """A dynamic step: answers with the content of the last ``tool`` message (or, failing
    that, the last ``user`` message) of the request."""
    messages: list[dict[str, Any]] = request.get("messages") or []
    for role in ("tool", "user"):
        for message in reversed(messages):
            if message.get("role") == role:
                return Text(_content_text(message.get("content")) or "(empty)")
    return Text("(nothing to echo)")


# --- helpers -----------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return ""


def prompt_tokens_of(messages: list[Any]) -> int:
    """The ``prompt_tokens`` the stand-in reports for a request with these messages."""
    return max(1, _prompt_chars(messages) // 4)


def _prompt_chars(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += len(_content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    return total


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    parts, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts


_HEADERS = {"x-stand-in": "scripted"}


def _error(status: int, message: str, code: str) -> JSONResponse:
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse(
        {"error": {"message": message, "type": type_, "code": code}},
        status_code=status,
        headers=_HEADERS,
    )


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _event(kind: str, data: dict[str, Any]) -> bytes:
    """One server-sent event of Anthropic's stream (its ``type`` repeated in the data)."""
    payload = json.dumps({"type": kind, **data}, separators=(",", ":"))
    return f"event: {kind}\ndata: {payload}\n\n".encode()


def _anthropic_error(status: int, message: str) -> JSONResponse:
    kind = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}
    return JSONResponse(
        {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}},
        status_code=status,
        headers=_HEADERS,
    )


def _anthropic_chars(body: dict[str, Any]) -> int:
    """Characters of an Anthropic request's system prompt and messages (text, tool use and
    results), for the usage the stand-in reports."""
    total = len(_content_text(body.get("system")))
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
            continue
        for block in content or ():
            if not isinstance(block, dict):
                continue
            total += len(str(block.get("text", "")))
            if block.get("type") == "tool_use":
                total += len(str(block.get("name", ""))) + len(json.dumps(block.get("input")))
            elif block.get("type") == "tool_result":
                total += len(_content_text(block.get("content")))
    return total


# --- the server --------------------------------------------------------------------------------


class ModelServer:
    """The stand-in's state (scripts, recorded requests) and its Starlette ``app``.

    ``run_model_server()`` serves it over HTTP; ``host``/``port``/``base_url`` are set then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[ScriptStep]] = {}
        self._requests: dict[str, list[dict[str, Any]]] = {}
        self._models_auth: list[str] = []
        self._models_failure: Fail | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/healthz", self._healthz, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1``, what ``OPENAI_BASE_URL`` should be."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``http://<host>:<port>``, what ``ANTHROPIC_BASE_URL`` should be."""
        return f"http://{self.host}:{self.port}"

    def script(self, name: str, steps: Sequence[ScriptStep]) -> None:
        """Register (or replace) the script answered for ``model == name``."""
        with self._lock:
            self._scripts[name] = list(steps)

    def requests(self, name: str) -> list[dict[str, Any]]:
        """Every chat-completions request body received for ``model == name``, in order."""
        with self._lock:
            return list(self._requests.get(name, ()))

    def models_listed(self) -> list[str]:
        """The ``Authorization`` header of every ``GET /v1/models`` so far, in order."""
        with self._lock:
            return list(self._models_auth)

    def fail_models(self, failure: Fail | None) -> None:
        """Answer ``GET /v1/models`` with this error (None: list the scripts again)."""
        with self._lock:
            self._models_failure = failure

    def clear_requests(self, name: str | None = None) -> None:
        """Forget the recorded requests of one script, or of all."""
        with self._lock:
            if name is None:
                self._requests.clear()
            else:
                self._requests.pop(name, None)

    # --- routes --------------------------------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _models(self, request: Request) -> Response:
        with self._lock:
            self._models_auth.append(request.headers.get("authorization", ""))
            names = sorted(self._scripts)
            failure = self._models_failure
        if failure is not None:
            return _error(failure.status, failure.message, "scripted_failure")
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "stand-in"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as err:
            return _error(400, f"invalid JSON body: {err}", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "the request needs a string `model`", "invalid_request")
        model: str = body["model"]
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _error(400, "the request needs a `messages` list", "invalid_request")
        with self._lock:
            self._requests.setdefault(model, []).append(body)
            script = self._scripts.get(model)
        if script is None:
            return _error(
                404,
                f"The model `{model}` does not exist (no script of that name on the stand-in).",
                "model_not_found",
            )

        index = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
        try:
            step = self._resolve(script, index, body)
        except Exception as err:
            return _error(500, f"script step raised {err!r}", "script_error")

        await _wait(step)
        if isinstance(step, Fail):
            return _error(step.status, step.message, "scripted_failure")

        # (id, name, arguments JSON) of each tool call; None for a text reply
        calls: list[tuple[str, str, str]] | None = None
        if isinstance(step, ToolCalls):
            calls = [
                (c.id or f"call_{index}_{i}", c.name, json.dumps(c.arguments))
                for i, c in enumerate(step.calls)
            ]
            out_chars = sum(len(name) + len(args) for _, name, args in calls)
        else:
            out_chars = len(step.text)
        prompt_tokens = prompt_tokens_of(messages)
        completion_tokens = max(1, out_chars // 4)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if step.cached_tokens:
            cached = min(step.cached_tokens, prompt_tokens)
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "scripted-stand-in",
        }

        if not body.get("stream"):
            message: dict[str, Any]
            if calls is None:
                assert isinstance(step, Text)
                message = {"role": "assistant", "content": step.text}
            else:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                        for i, n, a in calls
                    ],
                }
            choice = {
                "index": 0,
                "message": message,
                "finish_reason": "stop" if calls is None else "tool_calls",
                "logprobs": None,
            }
            return JSONResponse(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage},
                headers=_HEADERS,
            )

        chunk_head = {**head, "object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return _sse({**chunk_head, "choices": [choice]})

        frames: list[bytes] = []
        if calls is None:
            assert isinstance(step, Text)
            frames.append(chunk({"role": "assistant", "content": ""}))
            frames.extend(chunk({"content": piece}) for piece in _split(step.text, step.chunks))
            frames.append(chunk({}, "stop"))
        else:
            assert isinstance(step, ToolCalls)
            for i, (call_id, name, arguments) in enumerate(calls):
                first = {
                    "index": i,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                delta: dict[str, Any] = {"tool_calls": [first]}
                if i == 0:
                    delta = {"role": "assistant", "content": None, **delta}
                frames.append(chunk(delta))
                frames.extend(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                    for piece in _split(arguments, step.chunks)
                )
            frames.append(chunk({}, "tool_calls"))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            frames.append(_sse({**chunk_head, "choices": [], "usage": usage}))
        frames.append(_DONE)

        return StreamingResponse(
            _emit(frames, step.delay_between_chunks),
            media_type="text/event-stream",
            headers={**_HEADERS, "cache-control": "no-cache"},
        )

    async def _messages(self, request: Request) -> Response:
        """Anthropic's Messages API over the same scripts (step = assistant messages so far)."""
        try:
            body = json.loads(await request.body())
        except ValueError as err:
            return _anthropic_error(400, f"invalid JSON body: {err}")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _anthropic_error(400, "the request needs a string `model`")
        model: str = body["model"]
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _anthropic_error(400, "the request needs a `messages` list")
        with self._lock:
            self._requests.setdefault(model, []).append(body)
            script = self._scripts.get(model)
        if script is None:
            return _anthropic_error(404, f"model: {model} (no script of that name)")
        index = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
        try:
            step = self._resolve(script, index, body)
        except Exception as err:
            return _anthropic_error(500, f"script step raised {err!r}")
        await _wait(step)
        if isinstance(step, Fail):
            return _anthropic_error(step.status, step.message)

        blocks: list[dict[str, Any]]
        if isinstance(step, ToolCalls):
            blocks = [
                {"type": "tool_use", "id": c.id or f"toolu_{index}_{i}", "name": c.name,
                 "input": c.arguments}
                for i, c in enumerate(step.calls)
            ]  # fmt: skip
            out_chars = sum(len(b["name"]) + len(json.dumps(b["input"])) for b in blocks)
            stop_reason = "tool_use"
        else:
            blocks = [{"type": "text", "text": step.text}]
            out_chars, stop_reason = len(step.text), "end_turn"
        usage = {
            "input_tokens": max(1, _anthropic_chars(body) // 4),
            "output_tokens": max(1, out_chars // 4),
        }
        if step.cached_tokens:
            usage["cache_read_input_tokens"] = step.cached_tokens
        head = {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": model, "stop_sequence": None,
        }  # fmt: skip
        if not body.get("stream"):
            return JSONResponse(
                {**head, "content": blocks, "stop_reason": stop_reason, "usage": usage},
                headers=_HEADERS,
            )

        frames = [
            _event("message_start", {"message": {**head, "content": [], "stop_reason": None,
                   "usage": {**usage, "output_tokens": 1}}}),
        ]  # fmt: skip
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                pieces = _split(block["text"], step.chunks)
                deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
            else:
                start = {**block, "input": {}}
                pieces = _split(json.dumps(block["input"]), step.chunks)
                deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
            frames.append(_event("content_block_start", {"index": i, "content_block": start}))
            frames.extend(_event("content_block_delta", {"index": i, "delta": d}) for d in deltas)
            frames.append(_event("content_block_stop", {"index": i}))
        frames.append(
            _event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": usage["output_tokens"]}})
        )  # fmt: skip
        frames.append(_event("message_stop", {}))
        return StreamingResponse(
            _emit(frames, step.delay_between_chunks),
            media_type="text/event-stream",
            headers={**_HEADERS, "cache-control": "no-cache"},
        )

    @staticmethod
    def _resolve(script: list[ScriptStep], index: int, body: dict[str, Any]) -> Step:
        if index < len(script):
            entry = script[index]
            return entry(body) if callable(entry) else entry
        if script:
            last = script[-1]
            step = last(body) if callable(last) else last
            if isinstance(step, Text):
                return step
        return Text(SCRIPT_EXHAUSTED)


HOLD_AT_MOST_SECONDS = 120.0


async def _wait(step: Step) -> None:
    """A step's ``delay``, then its ``hold`` (the test's event; at most two minutes)."""
    if step.delay > 0:
        await asyncio.sleep(step.delay)
    hold = getattr(step, "hold", None)
    if hold is not None:
        await asyncio.to_thread(hold.wait, HOLD_AT_MOST_SECONDS)


async def _emit(frames: list[bytes], delay_between_chunks: float) -> AsyncIterator[bytes]:
    if delay_between_chunks <= 0:
        yield b"".join(frames)
        return
    for i, frame in enumerate(frames):
        if i:
            await asyncio.sleep(delay_between_chunks)
        yield frame


# --- running it --------------------------------------------------------------------------------


@contextlib.contextmanager
def run_model_server(
    port: int = 0, host: str = "127.0.0.1", server: ModelServer | None = None
) -> Iterator[ModelServer]:
    """Serve a ``ModelServer`` (a new one unless given) with uvicorn in a background thread on
    ``host:port`` (port 0: a free one, read back into ``server.port``); stop it on exit."""
    model_server = server or ModelServer()
    config = uvicorn.Config(
        model_server.app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="model-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            uv.should_exit = True
            thread.join(5)
            raise RuntimeError(f"the stand-in model server did not start on {host}:{port}")
        time.sleep(0.005)
    model_server.host = host
    model_server.port = int(uv.servers[0].sockets[0].getsockname()[1])
    try:
        yield model_server
    finally:
        uv.should_exit = True
        thread.join(10)


def _load_scripts(path: Path) -> dict[str, list[ScriptStep]]:
    raw = json.loads(path.read_text())
    scripts: dict[str, list[ScriptStep]] = {}
    for name, steps in raw.items():
        parsed: list[ScriptStep] = []
        for s in steps:
            if "text" in s:
                parsed.append(Text(s["text"], s.get("chunks", 1), s.get("delay", 0.0)))
            elif "tool_calls" in s:
                calls = [
                    Call(c["name"], c.get("arguments", {}), c.get("id")) for c in s["tool_calls"]
                ]
                parsed.append(ToolCalls(calls, delay=s.get("delay", 0.0)))
            elif "fail" in s:
                parsed.append(Fail(s["fail"], s.get("message", "scripted failure")))
            else:
                raise ValueError(f"script {name!r}: unknown step {s!r}")
        scripts[name] = parsed
    return scripts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Scripted OpenAI-compatible stand-in for a hosted LLM (not a model)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--scripts", type=Path, help='JSON: {"name": [step, ...]}')
    args = parser.parse_args(argv)
    server = ModelServer()
    server.script("hello", [Text("Hello from the stand-in model.")])
    server.script("echo", [echo_last_tool_result])
    if args.scripts:
        for name, steps in _load_scripts(args.scripts).items():
            server.script(name, steps)
    with run_model_server(args.port, args.host, server):
        print(f"listening on {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
