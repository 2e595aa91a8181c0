"""Tool calls that wait for a person's approval (AI SDK v6 human-in-the-loop, ADR 14).

pydantic-ai does the bookkeeping: :class:`ApprovalGate` defers a call that a rule names
(``ApprovalRequired`` once its arguments are valid), the other calls of the same model response
run, and ``agent.run`` returns ``DeferredToolRequests``. The turn does not end there: within
the same workflow :func:`wait_for_decisions` shows the requests (``tool-approval-request``, the
tool part in ``approval-requested``), waits for each answer with ``DBOS.recv_async``, as
``ask_user_question`` does (durable across restarts, no worker slot held), and the turn runs
the agent again with the decisions: an approved call runs, a denied one returns the person's
reason to the model (``tool-output-denied`` on the stream, ``output-denied`` in the message).

The rules a turn applies are those recorded by its first step (``_begin``): a recovered turn
decides as its first attempt did. (A pattern that only sometimes runs out of time could still
decide otherwise; the time limit is far above what a sane pattern takes.)

A subagent or a headless run has no one to ask: there a call that needs approval fails with a
result saying so, and the model carries on without it.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import (
    DeferredToolRequests,
    DeferredToolResults,
    ToolApproved,
    ToolDefinition,
    ToolDenied,
)

from agent_sessions.agent.deps import TurnDeps
from agent_sessions.approval_rules import needs_approval

APPROVAL_TIMEOUT_SECONDS = 24 * 3600
DENIED = "The user denied this call"
UNANSWERED = "No one answered the approval request in time"
NO_ONE_TO_ASK = (
    "This call needs a person's approval, and there is no one to ask here ({where}); it was "
    "not run. Do without it or leave it to the user."
)


def answer_topic(tool_call_id: str) -> str:
    """Where the answer to a call's approval arrives (the same topic as a client tool's)."""
    return f"answer:{tool_call_id}"


def denial_text(reason: str | None) -> str:
    """What the model reads for a denied call."""
    return f"{DENIED}: {reason}" if reason else f"{DENIED}."


def _can_ask(deps: TurnDeps) -> bool:
    return deps.sink is not None and not deps.headless


class ApprovalGate(AbstractCapability[TurnDeps]):
    """Defers the calls the chat's rules name; refuses them where no one can answer."""

    async def after_tool_validate(
        self, ctx: RunContext[TurnDeps], *, call: ToolCallPart, tool_def: ToolDefinition,
        args: Any,
    ) -> Any:  # fmt: skip
        if (
            _can_ask(ctx.deps)
            and not ctx.tool_call_approved
            and needs_approval(ctx.deps.approval_rules, call.tool_name, call.args_as_dict())
        ):
            raise ApprovalRequired
        return args

    async def wrap_tool_execute(
        self, ctx: RunContext[TurnDeps], *, call: ToolCallPart, tool_def: ToolDefinition,
        args: Any, handler: Any,
    ) -> Any:  # fmt: skip
        deps = ctx.deps
        if not _can_ask(deps) and needs_approval(
            deps.approval_rules, call.tool_name, call.args_as_dict()
        ):
            where = "a headless run" if deps.headless else "a subagent"
            raise ToolFailed(NO_ONE_TO_ASK.format(where=where))
        return await handler(args)


async def wait_for_decisions(deps: TurnDeps, requests: DeferredToolRequests) -> DeferredToolResults:
    """Show the approval requests, wait for every answer, record them; the decisions."""
    sink = deps.sink
    assert sink is not None, "only a turn with a stream defers calls"
    calls = [c.tool_call_id for c in requests.approvals]

    async def announce() -> None:
        # Outputs of the calls that ran meanwhile first: the step then shows every call
        # either done or waiting, which is what the AI SDK client waits for to send answers.
        ran = deps.tool_returns
        waiting = set(calls)
        done = [ran[c] for c in sink.builder.open_tool_calls() if c in ran and c not in waiting]
        await sink.tool_returns(done)
        await sink.pause(
            [{"type": "tool-approval-request", "approvalId": c, "toolCallId": c} for c in calls]
        )

    await DBOS.run_step_async({"name": "approvals.request"}, announce)
    answers: dict[str, Any] = {}
    for call_id in calls:
        receive = DBOS.recv_async(answer_topic(call_id), timeout_seconds=APPROVAL_TIMEOUT_SECONDS)
        answers[call_id] = await deps.wait_for_answer(receive)

    decisions: dict[str, bool | ToolApproved | ToolDenied] = {}
    responses: dict[str, tuple[bool, str | None]] = {}
    for call_id, answer in answers.items():
        approved = isinstance(answer, dict) and answer.get("approved") is True
        reason = answer.get("reason") if isinstance(answer, dict) else None
        if answer is None:
            reason = UNANSWERED
        reason = reason if isinstance(reason, str) and reason else None
        responses[call_id] = (approved, reason)
        decisions[call_id] = True if approved else ToolDenied(denial_text(reason))

    async def record() -> None:
        for call_id, (approved, reason) in responses.items():
            sink.builder.respond(call_id, approved=approved, reason=reason)
        await sink.persist()

    await DBOS.run_step_async({"name": "approvals.record"}, record)
    return DeferredToolResults(approvals=decisions)


def pending_approvals(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The tool parts of a stored assistant message that wait for an approval."""
    out = []
    for part in (message or {}).get("parts") or []:
        approval = part.get("approval")
        if part.get("state") == "approval-requested" and isinstance(approval, dict):
            out.append({
                "approvalId": approval.get("id"), "toolCallId": part.get("toolCallId"),
                "toolName": str(part.get("type", ""))[len("tool-"):], "input": part.get("input"),
            })  # fmt: skip
    return out


def pending_questions(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``ask_user_question`` calls of a stored assistant message still without an answer."""
    return [
        {"toolCallId": part.get("toolCallId"), "input": part.get("input")}
        for part in (message or {}).get("parts") or []
        if part.get("type") == "tool-ask_user_question" and part.get("state") == "input-available"
    ]


def for_model(message: dict[str, Any]) -> dict[str, Any]:
    """A stored assistant message as the model's history reads it: a denied call's result is
    the sentence the model read when it was denied, not the bare reason."""
    parts = message.get("parts")
    if not isinstance(parts, list) or not any(
        isinstance(p, dict) and p.get("state") == "output-denied" for p in parts
    ):
        return message
    out = []
    for part in parts:
        if isinstance(part, dict) and part.get("state") == "output-denied":
            given = part.get("approval")
            approval: dict[str, Any] = given if isinstance(given, dict) else {}
            reason = approval.get("reason")
            text = denial_text(reason if isinstance(reason, str) else None)
            part = {**part, "approval": {**approval, "approved": False, "reason": text}}
        out.append(part)
    return {**message, "parts": out}
