"""``DirectChatOpenAI`` sends what the SDK sends, without the SDK's request transform.

Both clients talk to the scripted stand-in model over real HTTP; a transport that records each
request on its way out (then sends it) captures method, URL, headers and the JSON body (equal
as JSON: only the order of the top-level keys differs, and ``content-length`` is compared too).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Callable, Iterator
from typing import Any

import httpx2
import openai.resources.chat.completions.completions as sdk_completions
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import AgentStreamEvent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agent_sessions.agent.models import CachedToolSchemas
from agent_sessions.agent.openai_client import DirectChatOpenAI, _transform_is_identity
from tests.support.model_server import Call, ModelServer, Text, ToolCalls

Sent = tuple[str, str, dict[str, str], Any]


class _Recording(httpx2.AsyncHTTPTransport):
    def __init__(self, sent: list[Sent]) -> None:
        super().__init__()
        self.sent = sent

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        sent = (request.method, str(request.url), dict(request.headers), json.loads(body))
        self.sent.append(sent)
        return await super().handle_async_request(request)


@pytest.fixture
def transforms(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Calls of the SDK's request transform by ``chat.completions.create`` (a spy)."""
    calls: list[object] = []
    real = sdk_completions.async_maybe_transform

    async def spy(data: Any, expected_type: Any) -> Any:
        calls.append(expected_type)
        return await real(data, expected_type)

    monkeypatch.setattr(sdk_completions, "async_maybe_transform", spy)
    return calls


def _client(cls: type[AsyncOpenAI], server: ModelServer, sent: list[Sent]) -> AsyncOpenAI:
    http = httpx2.AsyncClient(transport=_Recording(sent))
    return cls(api_key="test-key", base_url=server.base_url, http_client=http, max_retries=0)


async def _agent_run(
    client: AsyncOpenAI,
    script: str,
    stream: bool,
    model_cls: type[OpenAIChatModel] = OpenAIChatModel,
) -> str:
    agent = Agent(
        model_cls(script, provider=OpenAIProvider(openai_client=client)),
        instructions="You are terse.",
    )

    @agent.tool
    def add(ctx: RunContext[None], a: int, b: int, note: str | None = None) -> dict[str, Any]:
        """Add two numbers."""
        return {"sum": a + b, "note": note, "nested": [{"ok": True}, 1.5]}

    async def on_events(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for _ in events:
            pass

    handler = on_events if stream else None
    result = await agent.run("What is 2 + 40? Üñíçødé too.", event_stream_handler=handler)
    return result.output


def _run_both(
    server: ModelServer, go: Callable[[AsyncOpenAI], Any]
) -> Iterator[tuple[list[Sent], Any]]:
    async def closing(client: AsyncOpenAI) -> Any:
        async with client:
            return await go(client)

    for cls in (AsyncOpenAI, DirectChatOpenAI):
        sent: list[Sent] = []
        yield sent, asyncio.run(closing(_client(cls, server, sent)))


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "non-streaming"])
def test_agent_requests_are_identical_and_skip_the_transform(
    model_server: ModelServer, transforms: list[object], stream: bool
) -> None:
    assert _transform_is_identity()
    script = f"direct-client-{stream}"
    model_server.script(
        script,
        [
            ToolCalls([Call("add", {"a": 2, "b": 40}), Call("add", {"a": 1, "b": 1, "note": "x"})]),
            ToolCalls([Call("add", {"a": 3, "b": 4})]),
            Text("The sum is 42."),
        ],
    )
    sdk, direct = _run_both(model_server, lambda c: _agent_run(c, script, stream))
    assert sdk[1] == direct[1] == "The sum is 42."
    assert len(sdk[0]) == 3
    assert direct[0] == sdk[0]
    # The SDK path transformed each of its three requests; the direct client none of its own.
    assert len(transforms) == 3


def test_a_body_that_is_not_plain_json_takes_the_sdk_path(
    model_server: ModelServer, transforms: list[object]
) -> None:
    model_server.script("direct-client-fallback", [Text("ok")])

    async def go(client: AsyncOpenAI) -> str | None:
        # A generator of messages (an Iterable, which the SDK turns into a list) and a tuple.
        messages = ({"role": r, "content": c} for r, c in (("system", "s"), ("user", "hi")))
        done = await client.chat.completions.create(
            model="direct-client-fallback", messages=messages, stop=("a", "b"), max_tokens=5
        )
        return done.choices[0].message.content

    sdk, direct = _run_both(model_server, go)
    assert sdk[1] == direct[1] == "ok"
    assert direct[0] == sdk[0]
    assert len(transforms) == 2


def _streamed_chunks(server: ModelServer, script: str) -> list[dict[str, Any]]:
    """The stand-in's SSE data for one streamed request, as the JSON objects it sent."""
    body = {
        "model": script, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "go"}],
    }  # fmt: skip
    raw = httpx2.post(
        f"{server.base_url}/chat/completions", json=body, headers={"authorization": "Bearer k"}
    ).text
    lines = [ln[len("data: ") :] for ln in raw.splitlines() if ln.startswith("data: ")]
    return [json.loads(ln) for ln in lines if ln != "[DONE]"]


@pytest.mark.parametrize("kind", ["text", "tool-calls"])
def test_streamed_chunks_are_built_as_the_sdk_builds_them(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Validation builds each chunk the SDK would construct: same fields, same set fields,
    same extras, same dict; one that does not validate is built the SDK's lenient way."""
    import openai._base_client as base_client

    script = f"direct-chunks-{kind}"
    step = Text("Hello there, friend.", chunks=3) if kind == "text" else ToolCalls(
        [Call("add", {"a": 2, "b": 40}), Call("add", {"a": 1, "b": 1})]
    )  # fmt: skip
    model_server.script(script, [step])
    chunks = _streamed_chunks(model_server, script)
    assert len(chunks) >= 3
    odd = {**chunks[-2], "choices": [{**chunks[-2]["choices"][0], "finish_reason": "eos"}]}
    extra = {**chunks[0], "service_tier": "flex", "x_vendor": {"a": [1]}}
    constructed: list[object] = []
    real_construct = base_client.construct_type

    def counting(**kw: Any) -> Any:
        constructed.append(kw["type_"])
        return real_construct(**kw)

    monkeypatch.setattr(base_client, "construct_type", counting)
    response = httpx2.Response(200)
    sdk = AsyncOpenAI(api_key="k", base_url=model_server.base_url)
    direct = DirectChatOpenAI(api_key="k", base_url=model_server.base_url)
    for data in [*chunks, extra, odd]:
        a = sdk._process_response_data(data=data, cast_to=ChatCompletionChunk, response=response)
        constructed.clear()
        b = direct._process_response_data(data=data, cast_to=ChatCompletionChunk, response=response)
        assert type(b) is type(a) is ChatCompletionChunk
        assert b.model_dump() == a.model_dump()
        declared = set(ChatCompletionChunk.model_fields)  # (validation lists extras as set too)
        assert b.model_fields_set & declared == a.model_fields_set & declared
        assert b.model_extra == a.model_extra
        assert b.to_dict() == a.to_dict() == {k: v for k, v in data.items() if v is not None}
        assert len(constructed) == (1 if data is odd else 0)  # only the odd one the SDK's way


def test_tool_schemas_are_transformed_once_and_requests_stay_the_same(
    model_server: ModelServer, schema_walks: list[str]
) -> None:
    """``CachedToolSchemas``: the same requests as pydantic-ai's own model sends, with each
    tool's schema walked by the provider's transformer once instead of once per request."""

    class Cached(CachedToolSchemas, OpenAIChatModel):
        pass

    steps = [
        ToolCalls([Call("add", {"a": 2, "b": 40})]),
        ToolCalls([Call("add", {"a": 3, "b": 4, "note": "n"})]),
        Text("The sum is 42."),
    ]
    runs = []
    for cls in (OpenAIChatModel, Cached):
        script = f"cached-schemas-{cls.__name__}"
        model_server.script(script, steps)
        schema_walks.clear()
        sent: list[Sent] = []

        async def go(model_cls: type[OpenAIChatModel], script: str, sent: list[Sent]) -> str:
            async with _client(AsyncOpenAI, model_server, sent) as client:
                return await _agent_run(client, script, True, model_cls)

        output = asyncio.run(go(cls, script, sent))
        runs.append((output, [(m, body) for m, _url, _h, body in sent], list(schema_walks)))
    (plain_out, plain_sent, plain_walks), (cached_out, cached_sent, cached_walks) = runs
    assert plain_out == cached_out == "The sum is 42."
    assert len(plain_sent) == len(cached_sent) == 3
    for (m1, b1), (m2, b2) in zip(plain_sent, cached_sent, strict=True):
        assert m1 == m2
        assert {**b1, "model": None} == {**b2, "model": None}  # the tools as sent, too
    assert plain_walks == ["add"] * 3  # once per request
    assert cached_walks == ["add"]  # once
