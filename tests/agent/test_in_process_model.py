"""Turns with pydantic-ai's ``FunctionModel`` registered in-process, for what the OpenAI
stand-in cannot produce: reasoning parts, and several tool calls in one response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, DeltaThinkingPart, DeltaToolCall, FunctionModel

from agent_sessions.agent.models import register_model
from tests.agent.conftest import AgentsFactory
from tests.agent.protocol import check_protocol, text_of, tool_outputs


async def _stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[object]:
    step = sum(isinstance(m, ModelResponse) for m in messages)
    if step == 0:
        yield {0: DeltaThinkingPart(content="Two files, ")}
        yield {0: DeltaThinkingPart(content="then list them.")}
        for i, name in enumerate(("a.txt", "b.txt"), start=1):
            args = json.dumps({"filePath": name, "content": name})
            yield {i: DeltaToolCall(name="write", json_args=args, tool_call_id=f"w{i}")}
    else:
        yield "Wrote "
        yield "both."


def test_reasoning_and_parallel_tool_calls(agents: AgentsFactory) -> None:
    register_model("test/thinker", FunctionModel(stream_function=_stream))
    h = agents()
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "write two files", model="test/thinker")
    check_protocol(chunks)
    reasoning = "".join(c["delta"] for c in chunks if c["type"] == "reasoning-delta")
    assert reasoning == "Two files, then list them."
    assert sorted(tool_outputs(chunks)) == ["w1", "w2"]
    assert text_of(chunks) == "Wrote both."
    parts = h.chat(sid, chat_id)["messages"][-1]["parts"]
    assert [p["type"] for p in parts] == [
        "step-start", "reasoning", "tool-write", "tool-write", "step-start", "text",
    ]  # fmt: skip
    assert parts[1]["text"] == "Two files, then list them." and parts[1]["state"] == "done"
    assert h.run(headers["x-workflow-run-id"])["toolCalls"] == 2
