"""Operator hooks around the agent (DESIGN §6, Claude Code hook contract): ``PreToolUse`` and
``PostToolUse`` around every tool call, ``UserPromptSubmit`` before a turn, ``Stop`` after it.

Each hook run is a DBOS step, so a recovered turn does not run a hook twice for the same call.
A hook that blocks (exit 2, ``decision: block``, ``permissionDecision: deny|ask``) turns the
call into a failed tool result the model reads; one that crashes or times out is reported in
the stream as a ``data-hook`` part (and blocks only with ``failClosed``).
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import ToolDefinition

from agent_sessions.agent.deps import TurnDeps
from agent_sessions.agent.tools import WORKSPACE_ROOT
from agent_sessions.hooks import HookOutcome
from agent_sessions.lifecycle.context import current


async def run_hook(
    deps: TurnDeps, event: str, payload: dict[str, Any], subject: str = ""
) -> HookOutcome | None:
    """Run the operator hooks of ``event`` as one step; None when none are configured."""
    hooks = current().hooks
    if not hooks.has(event):
        return None
    body = {"session_id": deps.session_id, "cwd": WORKSPACE_ROOT, "chat_id": deps.chat_id,
            "run_id": deps.run_id, **payload}  # fmt: skip

    async def run() -> HookOutcome:
        outcome = await hooks.run(event, body, subject=subject or event)
        _apply_permission(outcome)
        if outcome.problems and deps.sink is not None:
            await deps.sink.emit(
                {"type": "data-hook", "data": {"event": event, "subject": subject,
                                               "problems": outcome.problems}}
            )  # fmt: skip
            await deps.sink.flush()
        return outcome

    outcome: HookOutcome = await DBOS.run_step_async({"name": f"hook.{event}"}, run)
    return outcome


def _apply_permission(outcome: HookOutcome) -> None:
    """``hookSpecificOutput.permissionDecision``: ``deny`` blocks; ``ask`` blocks too, as
    there is no one to ask inside a turn (the reason says so)."""
    for out in outcome.outputs:
        specific = out.get("hookSpecificOutput")
        if not isinstance(specific, dict):
            continue
        decision = specific.get("permissionDecision")
        if decision in ("deny", "ask"):
            outcome.blocked = True
            reason = specific.get("permissionDecisionReason") or f"permission: {decision}"
            outcome.reasons.append(str(reason))


def _reasons(outcome: HookOutcome) -> str:
    return "; ".join(outcome.reasons) or "blocked by a hook"


class ToolHooks(AbstractCapability[TurnDeps]):
    """Runs ``PreToolUse`` / ``PostToolUse`` hooks around each tool call."""

    async def wrap_tool_execute(
        self,
        ctx: RunContext[TurnDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        handler: Any,
    ) -> Any:
        tool_input = call.args_as_dict()
        pre = await run_hook(
            ctx.deps, "PreToolUse", {"tool_name": call.tool_name, "tool_input": tool_input},
            subject=call.tool_name,
        )  # fmt: skip
        if pre is not None and pre.blocked:
            raise ToolFailed(f"Blocked by a PreToolUse hook: {_reasons(pre)}")
        result = await handler(args)
        post = await run_hook(
            ctx.deps,
            "PostToolUse",
            {"tool_name": call.tool_name, "tool_input": tool_input, "tool_response": result},
            subject=call.tool_name,
        )
        if post is not None and post.blocked:
            return {"result": result, "hookFeedback": _reasons(post)}
        return result
