"""The floor under bench/agent.py's step overhead: what one agent step costs in the libraries
alone, with nothing of ours (no HTTP, no model server, no stream writes, no persistence).

pydantic-ai with a zero-latency ``FunctionModel`` calling one trivial tool per step, 20 steps:
plain, inside a DBOS workflow with ``DBOSDurability``, and with an event-stream handler that
does nothing (DBOS then gives every tool event a step of its own). DBOS on SQLite in WAL mode,
as the service runs it. Run: ``.venv/bin/python bench/agent_floor.py``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from dbos import DBOS
from pydantic_ai import Agent
from pydantic_ai.durable_exec.dbos import DBOSDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

STEPS = 20
RUNS = 7


def _step(messages: list[ModelMessage]) -> int:
    return sum(isinstance(m, ModelResponse) for m in messages)


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    n = _step(messages)
    if n < STEPS:
        return ModelResponse(parts=[ToolCallPart("todo", {"x": 1}, tool_call_id=f"c{n}")])
    return ModelResponse(parts=[TextPart("done")])


async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
    n = _step(messages)
    if n < STEPS:
        yield {0: DeltaToolCall(name="todo", json_args='{"x": 1}', tool_call_id=f"c{n}")}
    else:
        yield "done"


async def ignore_events(ctx: Any, events: AsyncIterable[Any]) -> None:
    async for _ in events:
        pass


def make(name: str, *, durable: bool, handler: bool) -> Agent[None, str]:
    capabilities = []
    if durable:
        capabilities.append(
            DBOSDurability(
                event_stream_handler=ignore_events if handler else None,
                parallel_execution_mode="sequential",
            )
        )
    agent = Agent(FunctionModel(respond, stream_function=stream), name=name,
                  capabilities=capabilities)  # fmt: skip

    @agent.tool_plain
    async def todo(x: int) -> str:
        return "ok"

    return agent


plain = make("floor_plain", durable=False, handler=False)
durable = make("floor_durable", durable=True, handler=False)
durable_events = make("floor_events", durable=True, handler=True)


@DBOS.workflow()
async def run_durable(with_events: bool) -> None:
    agent = durable_events if with_events else durable
    async with agent.iter("go") as run:
        async for _ in run:
            pass


async def run_plain() -> None:
    async with plain.iter("go") as run:
        async for _ in run:
            pass


async def in_workflow(with_events: bool) -> None:
    handle = await DBOS.start_workflow_async(run_durable, with_events)
    await handle.get_result()


async def main() -> None:
    path = os.path.join(tempfile.mkdtemp(prefix="agent-floor-"), "dbos.sqlite")
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()
    DBOS(config={"name": "agent-floor", "system_database_url": f"sqlite:///{path}",
                 "log_level": "WARNING"})  # fmt: skip
    DBOS.launch()
    cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("pydantic-ai alone", run_plain),
        ("DBOS workflow, no event handler", lambda: in_workflow(False)),
        ("DBOS workflow + event handler", lambda: in_workflow(True)),
    ]
    try:
        for label, case in cases:
            per_step = []
            for _ in range(RUNS):
                began = time.perf_counter()
                await case()
                per_step.append((time.perf_counter() - began) / (STEPS + 1) * 1000)
            print(f"{label:34s} per step p50 {statistics.median(per_step):5.1f} ms")
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    asyncio.run(main())
