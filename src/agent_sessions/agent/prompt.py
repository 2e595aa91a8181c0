"""The system prompt: how to work, the environment the agent is in (architecture.md, Agent turns),
and the skills it can load (names and descriptions only; the ``skill`` tool gives a body)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import asdict
from typing import Any

from dbos import DBOS
from pydantic_ai import RunContext

from agent_sessions.agent.deps import TurnDeps, TurnStopped
from agent_sessions.workspace.skills import Discovery, Skill, discover

log = logging.getLogger(__name__)

SKILLS_PROMPT_MAX = 20_000
"""Characters of skill descriptions the prompt carries; past them, skills are named only."""

CORE = """\
You are a coding agent working in a sandboxed workspace. Finish the user's task end to end:
read before you edit, prefer the dedicated tools (read, write, edit, grep, glob) over shell
equivalents, verify your work with the project's own scripts, and keep going until it is done
or you truly need the user. Do not invent facts about files or command output: look. Do not
commit, amend or push with git unless asked. Use todo_write for work with several steps."""

SUBAGENT = """\
You are a subagent doing one delegated task in a sandboxed workspace. You cannot ask the user
anything. Work with the tools, then end with a short Summary and the Answer the caller needs."""


def environment(deps: TurnDeps) -> str:
    s = deps.settings
    repo = f"the git repository {deps.repo}" if deps.repo else "no cloned repository"
    branch = f" on branch {deps.branch}" if deps.branch else ""
    network = "on" if s.sandbox_network == "on" else "off (no internet access)"
    return f"""\
Environment:
- Workspace root: /workspace (all tool paths are relative to it); {repo}{branch}.
- Shell: bash with the usual tools (coreutils, git, grep, find, python3). Network: {network}.
- Limits: bash commands time out after {s.bash_timeout_seconds} s and their output is cut to
  50,000 characters (head and tail); read returns at most 2,000 lines per call; grep at most 100
  matches; a turn may make at most {s.agent_step_cap} model requests.
- Tools: bash, read, write, edit, grep, glob, todo_write, skill, task (a subagent for a
  self-contained piece of work; only its final answer comes back), ask_user_question (pauses
  the turn until the user answers)."""


def prefetch_skills(deps: TurnDeps) -> None:
    """Start the turn's skill discovery (a command in the sandbox) now, alongside the rest of
    its start-up (its history read and fitted, its hooks), rather than after it, just before
    the first model request: the first token no longer waits for the command's round trip.
    :func:`turn_skills`' step takes the result. Only for a turn's first execution: a recovered
    turn may have that step recorded already, and then needs no discovery at all."""
    if deps.skills is None and deps.skills_prefetch is None:
        task = asyncio.get_running_loop().create_task(
            _discover(deps), context=contextvars.Context()
        )  # not the workflow's context: this is no step
        task.add_done_callback(_retrieve)  # a turn that ends before its step never awaits it
        deps.skills_prefetch = task


def _retrieve(task: asyncio.Task[Discovery]) -> None:
    if not task.cancelled():
        task.exception()


async def _discover(deps: TurnDeps) -> Discovery:
    return await discover(await deps.sandbox())


async def turn_skills(deps: TurnDeps) -> list[Skill]:
    """The skills offered to the model in this turn, found once at its first model request,
    as a DBOS step: a recovered turn gets the same list, hence the same prompt. Discovery that
    fails leaves the turn without skills, never fails it."""
    if deps.skills is None:

        async def find() -> list[dict[str, Any]]:
            try:
                found = await deps.until_stopped(deps.skills_prefetch or _discover(deps))
            except TurnStopped:
                raise
            except Exception as err:
                log.warning("run %s: skill discovery failed: %s", deps.run_id, err)
                return []
            for problem in found.errors:
                log.info("run %s: skill %s skipped: %s", deps.run_id, problem.path, problem.error)
            return [asdict(s) for s in found.skills if s.model_invocable]

        found: list[dict[str, Any]] = await DBOS.run_step_async({"name": "skills.discover"}, find)
        deps.skills = [Skill(**s) for s in found]
    return deps.skills


def skills_section(skills: list[Skill]) -> str:
    """Names and descriptions only: a body costs context only once the model asks for it."""
    if not skills:
        return ""
    lines, size, unlisted = [], 0, []
    for s in skills:
        line = f"- {s.name}: {s.description}"
        if size + len(line) > SKILLS_PROMPT_MAX:
            unlisted.append(s.name)
            continue
        lines.append(line)
        size += len(line) + 1
    if unlisted:
        lines.append(f"- and, without descriptions: {', '.join(unlisted)}")
    listing = "\n".join(lines)
    return f"""

Skills: instructions for particular tasks. When one fits the task, load it with the skill
tool before anything else (a message starting with /<name> asks for that skill), then follow
what it says. Available skills:
{listing}"""


async def main_instructions(ctx: RunContext[TurnDeps]) -> str:
    skills = skills_section(await turn_skills(ctx.deps))
    return f"{CORE}\n\n{environment(ctx.deps)}{skills}"


async def subagent_instructions(ctx: RunContext[TurnDeps]) -> str:
    skills = skills_section(await turn_skills(ctx.deps))
    return f"{SUBAGENT}\n\n{environment(ctx.deps)}{skills}"
