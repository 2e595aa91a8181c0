"""One agent turn = one DBOS workflow (architecture.md, Agent turns); the workflow id is the run id.

The pydantic-ai agents are built once, at import, because DBOS must know every step before it
launches. ``DBOSDurability`` makes each model request a step; the chat's model streams inside
it and sends its events to :class:`~agent_sessions.agent.sink.ChunkSink` (:mod:`.live`), so
a recovered turn neither repeats a model call nor re-sends its chunks; each sandbox tool call
is a step of its own (:mod:`.tools`). What a crash can repeat is the one step in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any, Literal

from dbos import DBOS
from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import ResolveModelId
from pydantic_ai.durable_exec.dbos import DBOSDurability
from pydantic_ai.exceptions import ToolFailed, UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelResolutionContext
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import DeferredToolRequests
from pydantic_ai.ui.vercel_ai import VercelAIAdapter
from pydantic_ai.ui.vercel_ai.request_types import UIMessage
from pydantic_ai.usage import RunUsage, UsageLimits

from agent_sessions import logs, metrics
from agent_sessions.agent import (
    approvals,
    autocommit,
    context,
    model_errors,
    models,
    pricing,
    prompt,
    user_parts,
)
from agent_sessions.agent.deps import TurnDeps, TurnStopped
from agent_sessions.agent.hooks import ToolHooks, run_hook
from agent_sessions.agent.live import LiveModel, RunRecorder
from agent_sessions.agent.registry import runs
from agent_sessions.agent.sink import ChunkSink, MessageBuilder
from agent_sessions.agent.stream import STREAM_KEY, write_chunks, written
from agent_sessions.agent.tools import sandbox_toolset
from agent_sessions.approval_rules import parse_rules
from agent_sessions.lifecycle.context import current
from agent_sessions.lifecycle.workflows import refresh_diff
from agent_sessions.store import chats as chat_store
from agent_sessions.store import lifecycle as cas
from agent_sessions.store import turns as store
from agent_sessions.store.models import utcnow

log = logging.getLogger(__name__)

CANCELLED = "Cancelled by the user"
STOPPED = "abort"
"""A stopped turn's finish reason (run record and message metadata): not the ``stop`` of a
turn that ended by itself. The stream says it with the AI SDK's ``abort`` chunk, since the
SDK's ``finish`` chunk only takes its own finish reasons."""
SDK_FINISH_REASONS = frozenset({"stop", "length", "content-filter", "tool-calls", "error", "other"})
WORKSPACE_TOOLS = frozenset({"bash", "write", "edit", "task"})
"""Tools that can change the workspace (``task``: a subagent has ``bash``). A turn that called
none, ran no repository hook and made no auto-commit leaves the cached diff as it was."""
_WORKSPACE_TOOL_PARTS = frozenset(f"tool-{name}" for name in WORKSPACE_TOOLS)


def _resolve(ctx: ModelResolutionContext[TurnDeps], model_id: str) -> Model | None:
    return LiveModel(models.build_model(current().settings, model_id), ctx.deps)


async def task(
    ctx: RunContext[TurnDeps],
    task: str,
    subagentType: Literal["explorer", "executor", "general"] = "general",
    instructions: str | None = None,
) -> str:
    """Hand a self-contained piece of work to a subagent with the sandbox tools and its own step
    cap; only its final answer comes back. `explorer` only reads (no write/edit); `executor`
    and `general` change files too. Say exactly what to do and what to report."""
    deps = ctx.deps
    sub_deps = replace(
        deps, sink=None, usage=None, subagent_usage=RunUsage(),
        read_only=subagentType == "explorer",
    )  # fmt: skip
    text = task if not instructions else f"{task}\n\nInstructions:\n{instructions}"
    cap = deps.settings.subagent_step_cap
    try:
        result = await subagent.run(
            f"[{subagentType} subagent]\n{text}",
            deps=sub_deps,
            model=deps.model_id,
            usage_limits=UsageLimits(request_limit=cap),
        )
    except UsageLimitExceeded:
        raise ToolFailed(f"The subagent reached its limit of {cap} model requests.") from None
    finally:  # the run's token count includes its subagents'
        if sub_deps.usage is not None:
            deps.subagent_usage.incr(sub_deps.usage)
    return result.output


_main_tools = sandbox_toolset(with_client_tools=True)
_main_tools.add_function(task)

agent: Agent[TurnDeps, str | DeferredToolRequests] = Agent(
    TestModel(),  # placeholder: every run names its model, resolved by _resolve inside the step
    name="agent_turn",
    deps_type=TurnDeps,
    output_type=[str, DeferredToolRequests],  # calls waiting for approval end a run, not a turn
    instructions=prompt.main_instructions,
    toolsets=[_main_tools],
    capabilities=[
        ResolveModelId(_resolve),
        RunRecorder(),
        approvals.ApprovalGate(),
        ToolHooks(),
        DBOSDurability(parallel_execution_mode="sequential"),
    ],
)

subagent: Agent[TurnDeps, str] = Agent(
    TestModel(),
    name="agent_subagent",
    deps_type=TurnDeps,
    instructions=prompt.subagent_instructions,
    toolsets=[sandbox_toolset(with_client_tools=False)],
    capabilities=[
        ResolveModelId(_resolve),
        RunRecorder(),
        approvals.ApprovalGate(),
        ToolHooks(),
        DBOSDurability(parallel_execution_mode="sequential"),
    ],
)


# --- steps ---------------------------------------------------------------------------------------


@DBOS.step()
async def _begin(run_id: str) -> dict[str, Any] | None:
    """Mark the run running, refresh the session's activity, and load what the turn needs."""
    operator_rules = [r.model_dump() for r in current().settings.approval_rules]

    def begin(s: Any) -> dict[str, Any] | None:
        run = store.mark_running(s, run_id)
        if run is None:
            return None
        view = cas.view(s, run.session_id)
        repo, branch = store.session_repo(s, run.session_id)
        history = [
            m.parts
            for m in chat_store.messages(s, run.chat_key)
            if m.id != run.assistant_message_id
        ]
        _touch(s, run.session_id)
        return {
            "run": run,
            "repo": repo,
            "branch": branch,
            "history": history,
            "lifecycle_state": view.lifecycle_state if view else None,
            "auto_commit": store.auto_commit_of(s, run.session_id)[0],
            # Recorded with the step: a recovered turn decides as the first attempt did, even
            # if the operator's rules or the chat's changed meanwhile.
            "approval_rules": [
                *operator_rules,
                *chat_store.approval_rules(s, run.chat_key),
            ],
        }

    return await current().db.write_call(begin)


@DBOS.step()
async def _prepare_sandbox(session_id: str) -> str | None:
    """Bring the sandbox to active (restoring a hibernated one); the error text if it cannot.

    The restore is its own lifecycle workflow with a deterministic id: ``ensure_active`` runs in
    a fresh context so that DBOS starts (or joins) it as a top-level workflow, not as a child
    recorded inside this step.
    """
    from agent_sessions.lifecycle import Lifecycle

    ctx = current()
    lifecycle = Lifecycle(ctx.settings, ctx.db, ctx)
    try:
        await asyncio.create_task(
            lifecycle.ensure_active(session_id), context=contextvars.Context()
        )
    except Exception as err:
        return getattr(err, "message", None) or str(err)
    return None


@DBOS.step()
async def _finish(run_id: str, outcome: dict[str, Any]) -> bool:
    """Close the stream's open parts, store the final message and outcome, release the chat.

    Returns whether the turn may have changed the workspace (:func:`_may_have_changed`), as
    the step's recorded output: a recovered turn refreshes the cached diff, or not, as the
    first attempt did."""
    deps = runs.deps(run_id)
    sink = deps.sink if deps is not None else None
    run = await current().db.read_call(lambda s: store.get_run(s, run_id))
    if run is None:
        return False
    finished_at = utcnow()
    if sink is not None:
        assert deps is not None
        ran = deps.tool_returns  # calls that ran, but no model step came to announce them
        await sink.tool_returns([ran[c] for c in sink.builder.open_tool_calls() if c in ran])
        # counted before the cancelled ones are closed; the subagents' own calls added
        tool_calls = sink.builder.tool_calls + (outcome["usage"]["subagent_tool_calls"] or 0)
        reason = CANCELLED if outcome["status"] == "cancelled" else (outcome["error"] or "Failed")
        for chunk in sink.builder.ending_open_tool_calls(reason):
            await sink.emit(chunk)
        await sink.end()
        if outcome["status"] == "cancelled":
            await sink.emit({"type": "abort"})  # no reason: ai 6.0.0's schema is strict
        if outcome["error"]:
            await sink.emit({"type": "error", "errorText": outcome["error"]})
        metadata = {
            "model": run.model_id,
            "usage": _usage_metadata(outcome["usage"], tool_calls),
            "durationMs": store.duration_ms(run.started_at, finished_at),
            "finishReason": outcome["finish_reason"],
            "runId": run_id,
        }
        await sink.emit({"type": "message-metadata", "messageMetadata": metadata})
        message = sink.builder.message
    else:
        message, metadata, tool_calls = None, {}, outcome["usage"]["subagent_tool_calls"] or 0

    def record(s: Any) -> None:
        if message is not None:
            store.upsert_message(
                s, chat=run.chat_key, message_id=run.assistant_message_id, role="assistant",
                message=message,
            )  # fmt: skip
        store.finish_run(
            s, run_id, status=outcome["status"], error=outcome["error"],
            finish_reason=outcome["finish_reason"], tool_calls=tool_calls,
            steps=outcome["steps"], finished_at=finished_at, **outcome["usage"],
        )  # fmt: skip
        replied = message is not None and bool(message.get("parts"))
        store.release_chat(s, run.chat_key, run_id, replied=replied)
        _touch(s, run.session_id)

    await current().db.write_call(record)
    finish: dict[str, Any] = {"type": "finish", "messageMetadata": metadata}
    if outcome["finish_reason"] in SDK_FINISH_REASONS:  # the SDK refuses any other value
        finish["finishReason"] = outcome["finish_reason"]
    if sink is not None:  # after the chat is released: a client that sees finish may go on
        await sink.emit(finish)
        await sink.flush()
    else:
        await write_chunks([finish])
    await DBOS.close_stream_async(STREAM_KEY)
    return deps is None or message is None or _may_have_changed(deps, message)


def _may_have_changed(deps: TurnDeps, message: dict[str, Any]) -> bool:
    """Whether the turn ran something that can change the workspace: a :data:`WORKSPACE_TOOLS`
    call (its part in the message, which a recovered turn continues, so calls of the attempt
    that crashed count too), a repository hook, or an auto-commit that made a commit."""
    for part in message.get("parts", []):
        kind = part.get("type")
        if kind in _WORKSPACE_TOOL_PARTS:
            return True
        if kind == autocommit.PART_TYPE and (part.get("data") or {}).get("status") == "success":
            return True
    return deps.repo_hooks is not None and deps.repo_hooks.configured()


def _touch(s: Any, session_id: str) -> None:
    cas.touch(s, session_id, current().settings.idle_timeout_seconds)


# --- the workflow --------------------------------------------------------------------------------


@DBOS.workflow(name="agent_turn")
async def run_turn(run_id: str) -> str:
    """Run one turn to its end; returns the run's final status."""
    logs.bind(run=run_id)
    attempt, first = await current().db.write_call(lambda s: store.count_attempt(s, run_id))
    with written.logging(run_id) if first else contextlib.nullcontext():
        return await _turn(run_id, attempt)


async def _turn(run_id: str, attempt: int) -> str:
    begun = await _begin(run_id)
    if begun is None:
        return "missing"
    run: store.RunView = begun["run"]
    if run.status in store.TERMINAL:
        return run.status
    logs.bind(session=run.session_id, chat=run.chat_id)
    metrics.TURNS_STARTED.inc()
    if attempt > 1:
        metrics.TURNS_RECOVERED.inc()
        log.info("turn recovered after a restart (execution %d)", attempt)
    await write_chunks([{"type": "start", "messageId": run.assistant_message_id}])
    settings = current().settings
    deps = TurnDeps(
        settings=settings, run_id=run_id, session_id=run.session_id, chat_id=run.chat_id,
        model_id=run.model_id, repo=begun["repo"], branch=begun["branch"],
        headless=run.headless,
        approval_rules=parse_rules(begun.get("approval_rules")),
    )  # fmt: skip
    with runs.running(deps):  # a stop, here or recorded by another process, reaches it
        try:
            return await _run(run, deps, begun, attempt)
        except Exception as err:
            await _abandon(run, err)
            raise


async def _abandon(run: store.RunView, err: Exception) -> None:
    """The workflow fails with an error no part of the turn handled (the database gone during
    ``_finish``, a turn recorded by incompatible code meeting other steps on replay): DBOS
    will not run it again, so record the run failed and release the chat, outside DBOS, or
    the chat would stay locked for good. Its message keeps what the last persisted step had."""
    log.exception("turn %s failed unexpectedly", run.id)
    error = f"The turn failed unexpectedly: {err or type(err).__name__}"[:1000]

    def record(s: Any) -> None:
        store.finish_run(s, run.id, status="failed", error=error, finish_reason="error")
        store.release_chat(s, run.chat_key, run.id, replied=False)

    with contextlib.suppress(Exception):  # the database may be what failed: the error stands
        await current().db.write_call(record)
    _observe_end(run, "failed", 0, {})


async def _run(run: store.RunView, deps: TurnDeps, begun: dict[str, Any], attempt: int) -> str:
    run_id = run.id
    failure: str | None = None
    if begun["lifecycle_state"] != "active":
        waiting = "provisioning" if begun["lifecycle_state"] == "provisioning" else "restoring"
        await write_chunks([_sandbox_chunk(waiting)])
        failure = await _prepare_sandbox(run.session_id)
        await write_chunks([_sandbox_chunk("failed" if failure else "active", failure)])

    if failure is None and attempt == 1:
        prompt.prefetch_skills(deps)
    fitted = await context.fit(run, deps.settings, begun["history"])  # ADR 15
    history = context.with_summary(
        fitted.summary, _model_history(fitted.messages, deps.settings.max_attachment_bytes)
    )
    persisted = await current().db.read_call(
        lambda s: store.message_of(s, run.chat_key, run.assistant_message_id)
    )  # the latest state, also when this is a recovery: the builder continues from it
    builder = MessageBuilder(persisted or {"id": run.assistant_message_id, "role": "assistant"})

    async def persist(message: dict[str, Any]) -> None:
        await current().db.write_call(
            lambda s: store.upsert_message(
                s,
                chat=run.chat_key,
                message_id=run.assistant_message_id,
                role="assistant",
                message=message,
            )
        )

    deps.sink = ChunkSink(
        builder,
        persist,
        history_responses=sum(isinstance(m, ModelResponse) for m in history),
        check_stop=deps.check_stop,
    )
    if attempt > 1:
        deps.sink.recovering(run_id)
    if failure is None:
        submit = await run_hook(deps, "UserPromptSubmit", {"prompt": _prompt_of(begun)})
        if submit is not None and submit.blocked:
            failure = f"Blocked by a UserPromptSubmit hook: {'; '.join(submit.reasons)}"
    status, error, finish_reason = "completed", failure, "stop"
    try:
        if failure is None:
            limits = UsageLimits(request_limit=deps.settings.agent_step_cap)
            result = await agent.run(
                message_history=history, deps=deps, model=run.model_id, usage_limits=limits
            )
            while isinstance(result.output, DeferredToolRequests):  # calls wait for a person
                decisions = await approvals.wait_for_decisions(deps, result.output)
                result = await agent.run(
                    message_history=result.all_messages(), deferred_tool_results=decisions,
                    deps=deps, model=run.model_id, usage_limits=limits, usage=result.usage,
                )  # fmt: skip
    except TurnStopped:
        status, finish_reason = "cancelled", STOPPED
    except UsageLimitExceeded:
        cap = deps.settings.agent_step_cap
        status, finish_reason = "failed", "error"
        error = f"Step limit reached: the turn made {cap} model requests and was stopped."
    except Exception as err:
        log.warning("turn %s failed: %s", run_id, err)
        status, finish_reason = "failed", "error"
        error = _error_text(err, run.model_id)
    finally:
        if deps.skills_prefetch is not None:  # unused when the turn ended before its prompt
            deps.skills_prefetch.cancel()
    if failure is not None:
        status, finish_reason = "failed", "error"
    await run_hook(deps, "Stop", {"stop_hook_active": False, "status": status})
    usage, steps = _usage_record(deps, run.model_id, fitted.usage), deps.sink.builder.steps
    outcome = {
        "status": status,
        "error": error,
        "finish_reason": finish_reason,
        "usage": usage,
        "steps": steps,
    }
    if begun.get("auto_commit") and status == "completed":  # while the sink is still open
        await autocommit.after_turn(run, deps)
    if await _finish(run_id, outcome) is not False:  # None: recorded before it said
        await refresh_diff(run.session_id)  # the cached diff after such a turn; never fails it
    _observe_end(run, status, steps, usage)
    return status


def _observe_end(run: store.RunView, status: str, steps: int, usage: dict[str, int | None]) -> None:
    """The turn's end in the metrics and the log: one line with its status, its duration
    since it first started (a recovered turn's included) and its tokens."""
    ms = store.duration_ms(run.started_at, utcnow()) or 0
    metrics.TURNS_FINISHED.labels(status).inc()
    metrics.TURN_DURATION.labels(status).observe(ms / 1000)
    metrics.TURN_STEPS.inc(steps)
    log.info(
        "turn finished: %s in %d ms, %d steps, %s input and %s output tokens",
        status, ms, steps, usage.get("input_tokens") or 0, usage.get("output_tokens") or 0,
    )  # fmt: skip


def _usage_record(
    deps: TurnDeps, model_id: str, compaction: dict[str, Any] | None = None
) -> dict[str, int | None]:
    """The run's usage as ``chat_runs`` columns: each figure the total (the main agent's, its
    subagents' and the summary's it wrote, ADR 15), ``subagent_*`` and ``compaction_*`` those
    parts; costs priced now, with the chat's model (:mod:`.pricing`)."""
    sub = deps.subagent_usage
    summary = _compaction_usage(compaction)
    total = (deps.usage or RunUsage()) + sub + summary  # costs too: the known ones are summed
    return {
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "cache_read_tokens": total.cache_read_tokens,
        "cache_write_tokens": total.cache_write_tokens,
        "subagent_input_tokens": sub.input_tokens,
        "subagent_output_tokens": sub.output_tokens,
        "subagent_cache_read_tokens": sub.cache_read_tokens,
        "subagent_cache_write_tokens": sub.cache_write_tokens,
        "subagent_tool_calls": sub.tool_calls,
        "compaction_input_tokens": summary.input_tokens,
        "compaction_output_tokens": summary.output_tokens,
        "cost_nanousd": pricing.to_nano(pricing.cost_of(deps.settings, model_id, total)),
        "subagent_cost_nanousd": pricing.to_nano(pricing.cost_of(deps.settings, model_id, sub)),
        "compaction_cost_nanousd": pricing.to_nano(
            pricing.cost_of(deps.settings, model_id, summary)
        ),
    }


def _compaction_usage(usage: dict[str, Any] | None) -> RunUsage:
    """The summary's usage as ``compact_context`` returned it (a recovered turn: as DBOS
    recorded it), so that it is counted once; none when the turn wrote no summary."""
    if not usage:
        return RunUsage()

    def count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    cost = usage.get("costUsd")
    return RunUsage(
        requests=1,
        input_tokens=count("inputTokens"),
        output_tokens=count("outputTokens"),
        cache_read_tokens=count("cachedInputTokens"),
        cache_write_tokens=count("cacheWriteTokens"),
        cost=Decimal(str(cost)) if isinstance(cost, int | float) else None,
    )


def _usage_metadata(usage: dict[str, int | None], tool_calls: int) -> dict[str, Any]:
    """The usage of the final ``message-metadata`` chunk, as ``GET /api/chat/runs/{id}``
    shows it (AI SDK names; ``inputTokens`` includes ``cachedInputTokens``)."""

    def tokens(prefix: str) -> dict[str, Any]:
        return {
            "inputTokens": usage[f"{prefix}input_tokens"],
            "outputTokens": usage[f"{prefix}output_tokens"],
            "cachedInputTokens": usage[f"{prefix}cache_read_tokens"],
            "cacheWriteTokens": usage[f"{prefix}cache_write_tokens"],
        }

    return {
        **tokens(""),
        "toolCalls": tool_calls,
        "costUsd": pricing.from_nano(usage["cost_nanousd"]),
        "subagent": {
            **tokens("subagent_"),
            "toolCalls": usage["subagent_tool_calls"],
            "costUsd": pricing.from_nano(usage["subagent_cost_nanousd"]),
        },
        "compaction": {
            "inputTokens": usage.get("compaction_input_tokens") or 0,
            "outputTokens": usage.get("compaction_output_tokens") or 0,
            "costUsd": pricing.from_nano(usage.get("compaction_cost_nanousd")),
        },
    }


def _error_text(err: Exception, model_id: str) -> str:
    """A model's failure as one line naming its provider, else the error's own message."""
    provider = model_id.partition("/")[0]
    line = model_errors.describe(err, provider)
    return (line or getattr(err, "message", None) or str(err) or type(err).__name__)[:1000]


def _prompt_of(begun: dict[str, Any]) -> str:
    history = begun["history"]
    parts = history[-1].get("parts", []) if history else []
    return " ".join(p.get("text", "") for p in parts if p.get("type") == "text")


def _sandbox_chunk(state: str, error: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"state": state}
    if error:
        data["error"] = error
    return {"type": "data-sandbox", "id": "sandbox", "data": data}


def _model_history(
    ui_messages: list[dict[str, Any]], max_attachment_bytes: int
) -> list[ModelMessage]:
    """Stored UI messages → the model's message history (the last one is the new prompt).

    Assistant messages are the service's own (``MessageBuilder``); every other one came from a
    client and keeps only what a user message may carry (:mod:`.user_parts`), also when it was
    stored before that rule. No file URL survives, wherever it sits.
    """
    kept = [
        approvals.for_model(m)
        if m.get("role") == "assistant"
        else user_parts.stored_user_message(m, max_attachment_bytes)
        for m in ui_messages
    ]
    parsed = [UIMessage.model_validate(m) for m in kept if m is not None]
    return user_parts.without_file_references(VercelAIAdapter.load_messages(parsed))
