"""What a turn's tools and stream handler share while the turn runs in this process.

Nothing here is persisted: a turn recovered in another process builds a new ``TurnDeps`` from
the run's row, and the sandbox is reconnected from the session's ``sandboxState`` on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.usage import RunUsage

from agent_sessions.agent.registry import runs
from agent_sessions.agent.sink import ChunkSink
from agent_sessions.approval_rules import ApprovalRule
from agent_sessions.exceptions import Conflict
from agent_sessions.hooks.repo import RepoHooks
from agent_sessions.lifecycle.context import current
from agent_sessions.sandbox import Sandbox
from agent_sessions.settings import Settings
from agent_sessions.store import lifecycle as cas
from agent_sessions.workspace.skills import Discovery, Skill

T = TypeVar("T")


class TurnStopped(Exception):
    """Raised inside a turn when the user stopped it; the turn ends as ``cancelled``."""


@dataclass
class TurnDeps:
    settings: Settings
    run_id: str
    session_id: str
    chat_id: str
    model_id: str
    repo: str | None = None
    branch: str | None = None
    headless: bool = False
    """A headless run (``POST /api/chat/runs``): no client tools, nobody to answer them."""
    read_only: bool = False
    """The ``explorer`` subagent: no write or edit tools."""
    sink: ChunkSink | None = None
    """Where the main agent's events go; subagents run without one (only their answer returns)."""
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    usage: RunUsage | None = None
    """The run's token usage so far (kept for turns that end by stop or error)."""
    subagent_usage: RunUsage = field(default_factory=RunUsage)
    """Tokens the turn's ``task`` subagents used."""
    tool_returns: dict[str, ToolReturnPart] = field(default_factory=dict)
    """Each tool call's return by call id, for calls that no later model step announced."""
    approval_rules: list[ApprovalRule] = field(default_factory=list)
    """The operator's approval rules and the chat's own (ADR 14)."""
    skills: list[Skill] | None = None
    """The skills the system prompt lists, discovered once per turn (``prompt.turn_skills``)."""
    skills_prefetch: asyncio.Task[Discovery] | None = None
    """That discovery, started with the turn's other start-up work (``prompt.prefetch_skills``)."""
    repo_hooks: RepoHooks | None = None
    """The repository's hooks, read once per turn (``agent.hooks``); None until then."""
    _sandbox: Sandbox | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sandbox(self) -> Sandbox:
        """The session's sandbox, connected on first use from its persisted state."""
        async with self._lock:
            if self._sandbox is None:
                ctx = current()
                view = await ctx.db.read_call(lambda s: cas.view(s, self.session_id))
                if view is None or view.sandbox_state is None:
                    raise Conflict("The session has no sandbox")
                provider = ctx.provider(view.sandbox_type)
                self._sandbox = await provider.connect(view.sandbox_state)
            return self._sandbox

    def check_stop(self) -> None:
        if self.stopped.is_set():
            raise TurnStopped

    async def until_stopped(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless the turn is stopped first (then cancel it, killing commands)."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        if self.stopped.is_set():
            task.cancel()
            raise TurnStopped
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise TurnStopped

    async def wait_for_answer(self, receive: Awaitable[Any]) -> Any:
        """Wait durably for a client tool's answer; a stop ends the wait. Meanwhile the turn
        holds no worker slot (:mod:`.registry`)."""
        with runs.paused(self.run_id):
            return await self.until_stopped(receive)
