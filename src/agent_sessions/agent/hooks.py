"""Operator hooks around the agent (docs/architecture.md, Hooks; Claude Code's hook contract):
``PreToolUse`` and ``PostToolUse`` around every tool call, ``UserPromptSubmit`` before a turn,
``Stop`` after it.

Each hook run is a DBOS step, so a recovered turn does not run a hook twice for the same call.
A hook that blocks (exit 2, ``decision: block``, ``permissionDecision: deny|ask``) turns the
call into a failed tool result the model reads; one that crashes or times out is reported in
the stream as a ``data-hook`` part (and blocks only with ``failClosed``).

With ``ALLOW_REPO_HOOKS`` the repository's hooks of the same events run too, in the sandbox
(:mod:`agent_sessions.hooks.repo`), after the operator's; their file is read once per turn.
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
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.hooks import HookOutcome
from agent_sessions.hooks.repo import RepoHooks, read_settings
from agent_sessions.lifecycle.context import current


async def run_hook(
    deps: TurnDeps, event: str, payload: dict[str, Any], subject: str = ""
) -> HookOutcome | None:
    """Run the hooks of ``event`` (the operator's, then the repository's) as one step; None
    when none are configured."""
    hooks = current().hooks
    repo = await _repo_hooks(deps, event)
    if not hooks.has(event) and not repo.has(event):
        return None
    body = {"session_id": deps.session_id, "cwd": WORKSPACE_ROOT, "chat_id": deps.chat_id,
            "run_id": deps.run_id, **payload}  # fmt: skip

    async def run() -> HookOutcome:
        outcome = HookOutcome()
        if hooks.has(event):
            outcome.merge(await hooks.run(event, body, subject=subject or event))
        if repo.has(event):
            try:
                sandbox = await deps.sandbox()
                outcome.merge(await repo.run(sandbox, event, body, subject=subject or event))
            except AgentSessionsError as err:
                outcome.problems.append(f"repository hooks could not run: {err.message}")
        _apply_permission(outcome)
        if outcome.problems:
            await _report(deps, event, subject, outcome.problems)
        return outcome

    outcome: HookOutcome = await DBOS.run_step_async({"name": f"hook.{event}"}, run)
    return outcome


async def _repo_hooks(deps: TurnDeps, event: str) -> RepoHooks:
    """The repository's hooks for this turn (none unless the operator allows them), read at
    its first hook event as one step: a recovered turn runs the hooks it started with, and a
    change to the file (by the agent too) applies from the next turn, as Claude Code takes its
    hooks when a session starts. Warnings about the file go to the stream."""
    if not deps.settings.allow_repo_hooks:
        return RepoHooks({})
    if deps.repo_hooks is None:

        async def load() -> dict[str, Any]:
            try:
                config, warnings = await read_settings(await deps.sandbox())
            except AgentSessionsError as err:  # no sandbox (a turn whose restore failed)
                config, warnings = {}, [f"repository hooks not read: {err.message}"]
            if warnings:
                await _report(deps, event, "", warnings)
            return config

        config: dict[str, Any] = await DBOS.run_step_async({"name": "hook.repo-settings"}, load)
        deps.repo_hooks = RepoHooks(config)
    return deps.repo_hooks


async def _report(deps: TurnDeps, event: str, subject: str, problems: list[str]) -> None:
    if deps.sink is not None:
        await deps.sink.emit(
            {"type": "data-hook", "data": {"event": event, "subject": subject,
                                           "problems": problems}}
        )  # fmt: skip
        await deps.sink.flush()


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
