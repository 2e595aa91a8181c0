"""The scripted stand-in for a hosted LLM (tests/support/model_server.py), driven over real HTTP
by the official ``openai`` SDK and by pydantic-ai's OpenAI provider."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.support.model_server import (
    SCRIPT_EXHAUSTED,
    Call,
    Fail,
    ModelServer,
    Text,
    ToolCalls,
    echo_last_tool_result,
    run_model_server,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with run_model_server() as srv:
        yield srv


@pytest.fixture
def client(server: ModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def _stream_chunks(client: openai.OpenAI, model: str, messages: list[Any]) -> list[Any]:
    with client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    ) as stream:
        return list(stream)


USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def test_streaming_text(server: ModelServer, client: openai.OpenAI) -> None:
    server.script("st-text", [Text("Hello, stand-in world!", chunks=4)])
    chunks = _stream_chunks(client, "st-text", USER)
    assert all(c.object == "chat.completion.chunk" and c.model == "st-text" for c in chunks)
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert [p for p in content if p] and len([p for p in content if p]) == 4
    assert "".join(p or "" for p in content) == "Hello, stand-in world!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (
        usage.prompt_tokens >= 1 and usage.completion_tokens == len("Hello, stand-in world!") // 4
    )
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_tool_calls(server: ModelServer, client: openai.OpenAI) -> None:
    args_a = {"city": "Paris", "units": "metric", "days": [1, 2, 3]}
    args_b = {"query": "état", "n": 2}
    server.script("st-tools", [ToolCalls([Call("weather", args_a), Call("search", args_b, "x1")])])
    chunks = _stream_chunks(client, "st-tools", USER)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or ():
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                assert not entry["id"], "id only on the first delta of a call"
                entry["id"] = tc.id
                assert tc.function is not None and tc.function.name
                entry["name"] = tc.function.name
            elif tc.function is not None:
                assert tc.function.name is None
            if tc.function is not None and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "call_0_0" and calls[0]["name"] == "weather"
    assert calls[1]["id"] == "x1" and calls[1]["name"] == "search"
    assert json.loads(calls[0]["arguments"]) == args_a
    assert json.loads(calls[1]["arguments"]) == args_b
    argument_deltas = [
        tc
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.index == 0 and tc.function and tc.function.arguments
    ]
    assert len(argument_deltas) == 3
    assert chunks[-1].usage is not None


def test_non_streaming_text_and_tool_calls(server: ModelServer, client: openai.OpenAI) -> None:
    server.script("ns", [ToolCalls([Call("f", {"a": 1})]), Text("done")])
    first = client.chat.completions.create(model="ns", messages=USER)
    assert first.object == "chat.completion" and first.choices[0].finish_reason == "tool_calls"
    message = first.choices[0].message
    assert message.content is None and message.tool_calls
    (call,) = message.tool_calls
    assert call.type == "function"
    assert call.id == "call_0_0" and call.function.name == "f"
    assert json.loads(call.function.arguments) == {"a": 1}
    assert first.usage is not None and first.usage.completion_tokens >= 1

    history: list[Any] = [
        *USER,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
    ]
    second = client.chat.completions.create(model="ns", messages=history)
    assert second.choices[0].message.content == "done"
    assert second.choices[0].finish_reason == "stop"


def test_step_is_chosen_by_assistant_message_count(
    server: ModelServer, client: openai.OpenAI
) -> None:
    server.script("sel", [Text("zero"), Text("one"), Text("two")])

    def ask(n_assistant: int) -> str | None:
        messages: list[Any] = [{"role": "system", "content": "be brief"}]
        for i in range(n_assistant):
            messages += [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": "a"},
            ]
        messages.append({"role": "user", "content": "q"})
        return (
            client.chat.completions.create(model="sel", messages=messages)
            .choices[0]
            .message.content
        )

    # Not a cursor: the same conversation, asked again, gets the same answer.
    assert [ask(0), ask(2), ask(1), ask(1), ask(0)] == ["zero", "two", "one", "one", "zero"]
    # Past the end: the last step again when it is text ...
    assert ask(5) == "two"
    # ... otherwise a plain "script exhausted" text.
    server.script("sel-tools", [ToolCalls([Call("f")])])
    after: list[Any] = [
        *USER,
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "y"},
    ]
    reply = client.chat.completions.create(model="sel-tools", messages=after)
    assert reply.choices[0].message.content == SCRIPT_EXHAUSTED


def test_unknown_model_is_404(server: ModelServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-script", messages=USER)
    assert info.value.status_code == 404
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    raw = httpx.post(f"{server.base_url}/chat/completions", json={"model": "nope", "messages": []})
    assert raw.status_code == 404
    assert set(raw.json()["error"]) == {"message", "type", "code"}


def test_fail_step(server: ModelServer, client: openai.OpenAI) -> None:
    server.script("fail", [Fail(503, "overloaded, scripted")])
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="fail", messages=USER)
    assert info.value.status_code == 503 and "overloaded, scripted" in info.value.message
    with pytest.raises(openai.InternalServerError):
        _stream_chunks(client, "fail", USER)


def test_requests_are_recorded(server: ModelServer, client: openai.OpenAI) -> None:
    server.script("rec", [echo_last_tool_result])
    messages: list[Any] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "echo me"},
    ]
    reply = client.chat.completions.create(model="rec", messages=messages, temperature=0.5)
    assert reply.choices[0].message.content == "echo me"
    (recorded,) = server.requests("rec")
    assert recorded["messages"] == messages and recorded["temperature"] == 0.5
    assert server.requests("never-used") == []
    server.clear_requests("rec")
    assert server.requests("rec") == []


def test_models_healthz_and_raw_sse(server: ModelServer) -> None:
    server.script("raw", [Text("abc", chunks=3)])
    assert "raw" in [m["id"] for m in httpx.get(f"{server.base_url}/models").json()["data"]]
    assert httpx.get(f"http://{server.host}:{server.port}/healthz").status_code == 200
    body = {"model": "raw", "messages": USER, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    frames = text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    parsed = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
    assert all(f.startswith("data: ") for f in frames[:-1])
    assert [p["choices"][0]["delta"].get("content") for p in parsed] == ["", "a", "b", "c", None]
    assert all({"id", "object", "created", "model"} <= p.keys() for p in parsed)


def test_delays(server: ModelServer, client: openai.OpenAI) -> None:
    server.script("slow", [Text("ab", chunks=2, delay=0.05, delay_between_chunks=0.02)])
    assert (
        "".join(
            c.choices[0].delta.content or ""
            for c in _stream_chunks(client, "slow", USER)
            if c.choices
        )
        == "ab"
    )


@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_stream"])
def test_pydantic_ai_agent_with_a_tool(server: ModelServer, stream: bool) -> None:
    name = f"agent-{stream}"
    server.script(
        name,
        [ToolCalls([Call("add", {"a": 2, "b": 40})]), Text("The sum is 42.", chunks=3)],
    )
    seen: list[tuple[int, int]] = []

    async def go() -> str:
        provider = OpenAIProvider(base_url=server.base_url, api_key="test")
        agent = Agent(OpenAIChatModel(name, provider=provider), instructions="Use the tool.")

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            """Add two integers."""
            seen.append((a, b))
            return a + b

        async with provider.client:
            if not stream:
                return (await agent.run("What is 2 + 40?")).output
            async with agent.run_stream("What is 2 + 40?") as run:
                return await run.get_output()

    assert asyncio.run(go()) == "The sum is 42."
    assert seen == [(2, 40)]
    first, second = server.requests(name)
    assert first["tools"][0]["function"]["name"] == "add"
    assert bool(first.get("stream")) is stream
    assert first["messages"][0] == {"role": "system", "content": "Use the tool."}
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("call_0_0", "42")]


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts.json"
    scripts.write_text(json.dumps({"cli": [{"text": "from the file"}]}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.model_server",
            "--port",
            "0",
            "--scripts",
            str(scripts),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0) as c:
            reply = c.chat.completions.create(model="cli", messages=USER)
            assert reply.choices[0].message.content == "from the file"
            hello = c.chat.completions.create(model="hello", messages=USER)
            assert hello.choices[0].message.content
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_anthropic_messages_streamed_and_not(server: ModelServer) -> None:
    """The same scripts in Anthropic's Messages protocol, read by the official ``anthropic``
    SDK: tool use then text, the step chosen by the assistant messages so far."""
    import anthropic

    server.script(
        "claude-script",
        [ToolCalls([Call("lookup", {"q": "x"})], chunks=2), Text("found it", chunks=2)],
    )
    client = anthropic.Anthropic(api_key="k", base_url=server.anthropic_base_url, max_retries=0)
    first = client.messages.create(
        model="claude-script", max_tokens=100, messages=[{"role": "user", "content": "go"}]
    )
    assert first.stop_reason == "tool_use"
    assert [(b.type, b.id, b.name, b.input) for b in first.content] == [  # type: ignore[union-attr]
        ("tool_use", "toolu_0_0", "lookup", {"q": "x"})
    ]
    history: list[Any] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0_0",
                                      "content": "the answer"}]},
    ]  # fmt: skip
    with client.messages.stream(model="claude-script", max_tokens=100, messages=history) as s:
        kinds = [event.type for event in s]
        final = s.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds
    assert final.stop_reason == "end_turn"
    assert [b.text for b in final.content] == ["found it"]  # type: ignore[union-attr]
    assert final.usage.input_tokens >= 1 and final.usage.output_tokens >= 1
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="no-such-script", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
