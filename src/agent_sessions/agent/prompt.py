"""The system prompt: how to work, and the environment the agent is in (DESIGN §6)."""

from __future__ import annotations

from pydantic_ai import RunContext

from agent_sessions.agent.deps import TurnDeps

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


def main_instructions(ctx: RunContext[TurnDeps]) -> str:
    return f"{CORE}\n\n{environment(ctx.deps)}"


def subagent_instructions(ctx: RunContext[TurnDeps]) -> str:
    return f"{SUBAGENT}\n\n{environment(ctx.deps)}"
