"""What a turn streams while it runs, without a DBOS step per agent event.

``DBOSDurability`` with an event-stream handler checkpoints every tool event as a step of its
own (two per tool call, each a commit). Instead the agent runs without a handler, and the chat's
model is wrapped in :class:`LiveModel`: its ``request`` runs inside DBOS's one model step,
streams the real model and tees each event to the turn's :class:`~.sink.ChunkSink`. Tool
outputs, which DBOS would have sent from the extra steps, are sent by the next model step from
the history it is handed (every call's return is there, including those pydantic-ai rejected
before any tool ran), or at the turn's end from what :class:`RunRecorder` kept (ADR 7).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ToolFailed, ToolFailedError, ToolRetryError
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models import Model, ModelRequestContext, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from agent_sessions import metrics
from agent_sessions.agent.deps import TurnDeps, TurnStopped


class LiveModel(WrapperModel):
    """The chat's model, streamed inside the model step with its events sent to the stream.

    A request the step records is not run again on recovery, so its events are sent exactly
    once; a request cut off by a crash runs again, and the sink replaces its first try.
    """

    def __init__(self, wrapped: Model, deps: TurnDeps) -> None:
        super().__init__(wrapped)
        self.deps = deps

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        deps, sink = self.deps, self.deps.sink
        deps.check_stop()
        if sink is not None:
            await sink.begin_request(messages)
        model = metrics.model_label(deps.model_id)
        started = time.perf_counter()

        async def stream() -> ModelResponse:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters
            ) as streamed:
                if sink is None:  # a subagent: only its final answer reaches the stream
                    async for _ in streamed:
                        deps.check_stop()
                else:
                    await sink.handle(messages, streamed)
            return streamed.get()

        try:
            # A stop also ends a request the model has not begun to answer (it may think for
            # minutes before its first token; the checks between events would wait for it).
            response = await deps.until_stopped(stream())
        except BaseException as err:
            outcome = "stopped" if isinstance(err, TurnStopped) else "error"
            metrics.MODEL_REQUESTS.labels(model, outcome).inc()
            raise
        _observe(model, time.perf_counter() - started, response)
        return response


def _observe(model: str, seconds: float, response: ModelResponse) -> None:
    """One model request in the metrics: once per request, never per streamed event."""
    metrics.MODEL_REQUESTS.labels(model, "ok").inc()
    metrics.MODEL_LATENCY.labels(model).observe(seconds)
    usage = response.usage
    metrics.MODEL_TOKENS.labels(model, "input").inc(usage.input_tokens)
    metrics.MODEL_TOKENS.labels(model, "output").inc(usage.output_tokens)
    if usage.cache_read_tokens:
        metrics.MODEL_TOKENS.labels(model, "cache_read").inc(usage.cache_read_tokens)


class RunRecorder(AbstractCapability[TurnDeps]):
    """Keeps, in workflow code, what a turn's end needs and no step records for it: the run's
    token usage (for a turn ended by a stop or an error) and each tool call's return (for calls
    no later model step announced). Replay rebuilds both, as the tool steps return again."""

    async def before_model_request(
        self, ctx: RunContext[TurnDeps], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        ctx.deps.usage = ctx.usage
        return request_context

    async def wrap_tool_execute(
        self,
        ctx: RunContext[TurnDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        handler: Any,
    ) -> Any:
        returns = ctx.deps.tool_returns
        tool = call.tool_name
        started, outcome = time.perf_counter(), "error"
        try:
            result = await handler(args)
            outcome = "ok"
        except ToolFailedError as err:  # a tool's ToolFailed, as the toolset wraps it
            returns[call.tool_call_id] = err.tool_failed
            outcome = "failed"
            raise
        except ToolRetryError as err:  # ModelRetry: the call's own return, outcome "retried"
            if isinstance(err.tool_retry, ToolReturnPart):
                returns[call.tool_call_id] = err.tool_retry
            outcome = "retried"
            raise
        except ToolFailed as err:  # raised around the tool (a PreToolUse hook's block)
            returns[call.tool_call_id] = ToolReturnPart(
                tool, err.message, tool_call_id=call.tool_call_id, outcome="failed"
            )
            outcome = "failed"
            raise
        finally:
            metrics.TOOL_CALLS.labels(tool, outcome).inc()
            metrics.TOOL_LATENCY.labels(tool).observe(time.perf_counter() - started)
        returns[call.tool_call_id] = ToolReturnPart(tool, result, tool_call_id=call.tool_call_id)
        return result
