"""The agent's tools (architecture.md, Agent turns), all confined to the session's sandbox.

Names and camelCase parameters follow the reference product so that prompts and clients written
for it work here. Each call that touches the sandbox is one DBOS step (:func:`sandbox_step`): a
turn recovered after a crash gets the recorded result back instead of running the command
again. A failure inside a tool is returned to the model as a failed tool result
(``ToolFailed``), never raised through the turn.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from dbos import DBOS
from pydantic import BaseModel, Field
from pydantic_ai import RunContext, Tool
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import FunctionToolset

from agent_sessions.agent.approvals import answer_topic
from agent_sessions.agent.command_output import shown_while_running
from agent_sessions.agent.deps import TurnDeps, TurnStopped
from agent_sessions.agent.reading import READ_MAX_OUTPUT, BinaryFile, numbered_lines
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.sandbox import (
    FileInfo,
    FileTooLarge,
    Sandbox,
    SandboxAuthError,
    SandboxElsewhere,
    SandboxNotFound,
    SandboxUnavailable,
)
from agent_sessions.workspace.skills import FRONTMATTER_MAX, discover, render_body

WORKSPACE_ROOT = "/workspace"
BASH_MAX_OUTPUT = 50_000
READ_DEFAULT_LIMIT = 2000
EDIT_MAX_BYTES = 4 << 20
"""Files ``edit`` changes at most: it holds the file, its text and the new text in memory."""
GREP_MAX_MATCHES = 100
GREP_MAX_PER_FILE = 10
GREP_MAX_LINE = 200
GREP_MAX_OUTPUT = (GREP_MAX_MATCHES + 1) * (GREP_MAX_LINE + 1)
"""Characters of grep's output kept: every line the pipeline lets through, whole."""
GLOB_MAX_OUTPUT = 500_000
SEARCH_TIMEOUT = 30.0
SKILL_READ_BYTES = 4 * READ_MAX_OUTPUT + FRONTMATTER_MAX
"""Bytes of a SKILL.md the skill tool reads: its frontmatter and as many characters as the
read tool returns at most (UTF-8 takes up to four bytes a character)."""


class ToolError(ToolFailed):
    """A failure the model should see and adapt to (bad path, ambiguous edit, …); raised
    outside a step it is a failed tool result as it is, inside one it is recorded first."""


def workspace_path(path: str | None) -> str:
    """Workspace-relative form of ``path``; ``/workspace/x`` is accepted for ``x``."""
    p = (path or ".").strip() or "."
    if p == WORKSPACE_ROOT or p == WORKSPACE_ROOT + "/":
        return "."
    if p.startswith(WORKSPACE_ROOT + "/"):
        p = p[len(WORKSPACE_ROOT) + 1 :]
    if p.startswith("/"):
        raise ToolError(f"{path}: paths are relative to the workspace root ({WORKSPACE_ROOT})")
    return p


UNREACHABLE = (SandboxNotFound, SandboxElsewhere, SandboxUnavailable, SandboxAuthError)


class SandboxUnreachable(AgentSessionsError):
    """The turn's sandbox is gone or on another host: an infrastructure failure that ends the
    turn visibly, never a tool result the model reads and the turn reports as success."""


async def sandbox_step(
    ctx: RunContext[TurnDeps], name: str, fn: Callable[[Sandbox], Awaitable[Any]]
) -> Any:
    """Run ``fn`` against the sandbox as one DBOS step that a stop request interrupts.

    The step returns ``{"ok": value}`` or ``{"error": message}`` so that a failed call is
    recorded like a successful one and is not run again on recovery.
    """
    deps = ctx.deps

    async def body() -> dict[str, Any]:
        # Not reaching the sandbox (gone, elsewhere, its provider down past the provider's own
        # retries, credentials refused) is no tool outcome for the model to read: the turn
        # fails, visibly (raised out of the step, which records it, so a replay fails alike).
        try:
            sandbox = await deps.sandbox()
            return {"ok": await deps.until_stopped(fn(sandbox))}
        except ToolError as err:
            return {"error": str(err)}
        except UNREACHABLE as err:
            raise SandboxUnreachable(
                f"The session's sandbox cannot be reached: {err.message}"
            ) from None
        except AgentSessionsError as err:
            return {"error": err.message}

    result: dict[str, Any] = await DBOS.run_step_async({"name": f"tool.{name}"}, body)
    if "error" in result:
        raise ToolFailed(result["error"])
    return result["ok"]


# --- bash --------------------------------------------------------------------------------------


async def bash(
    ctx: RunContext[TurnDeps], command: str, cwd: str | None = None, detached: bool = False
) -> dict[str, Any]:
    """Run a shell command with `bash -c` in the workspace (or `cwd`, relative to it).

    Times out after the configured limit (default 120 s); stdout and stderr are each capped at
    50,000 characters (head and tail kept, `truncated: true`). `detached: true` starts a
    long-running process (a dev server) and returns at once with its `commandId`.
    """
    directory = workspace_path(cwd)
    timeout = float(ctx.deps.settings.bash_timeout_seconds)

    async def run(sb: Sandbox) -> dict[str, Any]:
        async with shown_while_running(ctx.deps.sink, ctx.tool_call_id) as on_output:
            r = await sb.exec(
                command, cwd=directory, timeout=timeout, detached=detached,
                max_output=BASH_MAX_OUTPUT, on_output=on_output,
            )  # fmt: skip
        out: dict[str, Any] = {"exitCode": r.exit_code, "stdout": r.stdout, "stderr": r.stderr}
        if r.truncated:
            out["truncated"] = True
        if r.timed_out:
            out["timedOut"] = True
            out["error"] = f"command timed out after {timeout:g} s and was killed"
        if r.command_id:
            out["commandId"] = r.command_id
        return out

    return await sandbox_step(ctx, "bash", run)  # type: ignore[no-any-return]


# --- files -------------------------------------------------------------------------------------


async def _file_info(sb: Sandbox, path: str) -> FileInfo:
    info = await sb.stat(path)
    if info.kind == "dir":
        raise ToolError(f"{path} is a directory; use glob or bash ls to list it")
    return info


async def read(
    ctx: RunContext[TurnDeps], filePath: str, offset: int = 1, limit: int = READ_DEFAULT_LIMIT
) -> str:
    """Read a text file; lines come numbered (`N: line`), from line `offset` (1-based), at most
    `limit` lines (default 2000). Lines are cut at 2000 characters and one call returns at most
    100,000 characters; only the first 64 MiB of a file are scanned (use bash past them)."""
    path = workspace_path(filePath)
    start = max(1, offset)
    count = max(1, min(limit, READ_DEFAULT_LIMIT * 5))

    async def run(sb: Sandbox) -> str:
        info = await _file_info(sb, path)
        try:
            return await numbered_lines(sb, path, info.size, start, count)
        except BinaryFile:
            raise ToolError(f"{path} is a binary file ({info.size} bytes)") from None

    return await sandbox_step(ctx, "read", run)  # type: ignore[no-any-return]


async def write(ctx: RunContext[TurnDeps], filePath: str, content: str) -> str:
    """Write a file (replacing it), creating parent directories."""
    path = workspace_path(filePath)

    async def run(sb: Sandbox) -> str:
        data = content.encode()
        await sb.write_file(path, data)
        return f"Wrote {len(data)} bytes to {path}"

    return await sandbox_step(ctx, "write", run)  # type: ignore[no-any-return]


async def edit(
    ctx: RunContext[TurnDeps],
    filePath: str,
    oldString: str,
    newString: str,
    replaceAll: bool = False,
) -> str:
    """Replace `oldString` with `newString` in a file of at most 4 MiB (change bigger ones with
    bash). Fails when `oldString` is missing, equal to `newString`, or occurs more than once
    without `replaceAll: true`."""
    path = workspace_path(filePath)

    async def run(sb: Sandbox) -> str:
        if oldString == newString:
            raise ToolError("oldString and newString are identical; nothing to change")
        if not oldString:
            raise ToolError("oldString is empty; use write to create a file")
        info = await _file_info(sb, path)
        try:
            data = await sb.read_file(path, max_bytes=EDIT_MAX_BYTES)
        except FileTooLarge as err:
            size = f"{err.size} bytes" if err.size is not None else "it is growing"
            raise ToolError(
                f"{path} is too large for edit ({size}; the limit is {EDIT_MAX_BYTES} bytes): "
                "change it with bash instead (sed -i, or a script)"
            ) from None
        if b"\x00" in data[:8192]:
            raise ToolError(f"{path} is a binary file ({len(data)} bytes)")
        text = data.decode("utf-8", errors="replace")
        found = text.count(oldString)
        if found == 0:
            raise ToolError(f"oldString not found in {path}")
        if found > 1 and not replaceAll:
            raise ToolError(
                f"oldString occurs {found} times in {path}; add context or set replaceAll"
            )
        updated = (
            text.replace(oldString, newString)
            if replaceAll
            else text.replace(oldString, newString, 1)
        )
        await sb.write_file(path, updated.encode(), mode=info.mode)
        return f"Replaced {found if replaceAll else 1} occurrence(s) in {path}"

    return await sandbox_step(ctx, "edit", run)  # type: ignore[no-any-return]


# --- search ------------------------------------------------------------------------------------


async def grep(
    ctx: RunContext[TurnDeps],
    pattern: str,
    path: str | None = None,
    glob: str | None = None,
    caseSensitive: bool = True,
) -> dict[str, Any]:
    """Search file contents with an extended regular expression (`grep -rn -E`). Skips hidden
    directories and node_modules; at most 100 matches, 10 per file, lines cut at 200 chars."""
    where = workspace_path(path)
    argv = ["grep", "-rnIE", "-m", str(GREP_MAX_PER_FILE)]
    # ``.?*``, not ``.*``: grep matches the pattern against the directories it is given too, and
    # ``.*`` would exclude the workspace root itself (``.``).
    argv += ["--exclude-dir=.?*", "--exclude-dir=node_modules"]
    if not caseSensitive:
        argv.append("-i")
    if glob:
        argv.append(f"--include={glob}")
    argv += ["-e", pattern, "--", where]
    # Lines are cut in the sandbox, as they stream (cut holds no whole line): a match in a
    # 200 MB one-line file costs no more than any other.
    command = " ".join(shlex.quote(a) for a in argv)
    command += f" | cut -c 1-{GREP_MAX_LINE} | head -n {GREP_MAX_MATCHES + 1}"

    async def run(sb: Sandbox) -> dict[str, Any]:
        r = await sb.exec(command, timeout=SEARCH_TIMEOUT, max_output=GREP_MAX_OUTPUT)
        if r.timed_out:
            raise ToolError("grep timed out after 30 s; narrow the path or pattern")
        if r.exit_code not in (0, 1) and not r.stdout:
            raise ToolError(r.stderr.strip() or f"grep failed with exit code {r.exit_code}")
        lines = [ln[:GREP_MAX_LINE] for ln in r.stdout.split("\n") if ln]
        out: dict[str, Any] = {
            "matches": lines[:GREP_MAX_MATCHES],
            "count": len(lines[:GREP_MAX_MATCHES]),
        }
        if len(lines) > GREP_MAX_MATCHES:
            out["truncated"] = True
        return out

    return await sandbox_step(ctx, "grep", run)  # type: ignore[no-any-return]


_GLOB_SCRIPT = """
import json, os, pathlib, sys
root, pattern, limit = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hits = []
for p in root.glob(pattern):
    rel = p.relative_to(root).parts
    if any(part.startswith(".") or part == "node_modules" for part in rel):
        continue
    try:
        hits.append((p.lstat().st_mtime, str(p)))
    except OSError:
        pass
hits.sort(reverse=True)
print(json.dumps({"files": [h[1] for h in hits[:limit]], "total": len(hits)}))
"""


async def glob(
    ctx: RunContext[TurnDeps], pattern: str, path: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """Find files by glob pattern (`**/*.py`), newest first; skips hidden files and
    node_modules; at most `limit` (default 100) paths."""
    where = workspace_path(path)
    argv = ["python3", "-c", _GLOB_SCRIPT, where, pattern, str(max(1, min(limit, 1000)))]
    command = " ".join(shlex.quote(a) for a in argv)

    async def run(sb: Sandbox) -> dict[str, Any]:
        r = await sb.exec(command, timeout=SEARCH_TIMEOUT, max_output=GLOB_MAX_OUTPUT)
        if r.timed_out:
            raise ToolError("glob timed out after 30 s; narrow the path or pattern")
        if r.exit_code != 0:
            raise ToolError(
                r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "glob failed"
            )
        if r.truncated:
            raise ToolError(
                f"glob's answer is over {GLOB_MAX_OUTPUT} characters; lower limit or narrow the "
                "pattern"
            )
        result: dict[str, Any] = json.loads(r.stdout)
        return result

    return await sandbox_step(ctx, "glob", run)  # type: ignore[no-any-return]


# --- planning and skills -------------------------------------------------------------------------


class Todo(BaseModel):
    id: str
    content: str
    status: Literal["pending", "in_progress", "completed"]


async def todo_write(todos: list[Todo]) -> dict[str, Any]:
    """Replace the task list (statuses: pending, in_progress, completed); it is echoed back.
    Use it for work with several steps and keep exactly one item in_progress."""
    return {"todos": [t.model_dump() for t in todos]}


async def skill(ctx: RunContext[TurnDeps], skill: str, args: str | None = None) -> str:
    """Load a skill (listed under "Skills" in your instructions) by name and get its
    instructions; `args` fills its $ARGUMENTS. Then follow them."""

    async def run(sb: Sandbox) -> str:
        found = await discover(sb)
        hit = found.find(skill)
        if hit is None:
            names = ", ".join(s.name for s in found.skills if s.model_invocable) or "none"
            raise ToolError(f"Skill {skill!r} not found. Available skills: {names}")
        if not hit.model_invocable:
            raise ToolError(
                f"Skill {hit.name!r} cannot be invoked by the model (disable-model-invocation "
                "is set)"
            )
        text, more = await _head(sb, hit.path, SKILL_READ_BYTES)
        body = render_body(hit, text, args)
        if more or len(body) > READ_MAX_OUTPUT:
            body = (
                f"{body[:READ_MAX_OUTPUT]}\n(skill cut at {READ_MAX_OUTPUT} characters: read "
                f"the rest of {hit.path} with the read tool)"
            )
        return body

    return await sandbox_step(ctx, "skill", run)  # type: ignore[no-any-return]


async def _head(sb: Sandbox, path: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of a file as text, and whether there are more."""
    data = bytearray()
    async with contextlib.aclosing(sb.read_stream(path, length=limit + 1)) as chunks:
        async for chunk in chunks:
            data += chunk
    return bytes(data[:limit]).decode("utf-8", "replace"), len(data) > limit


# --- the client tool ---------------------------------------------------------------------------


class QuestionOption(BaseModel):
    label: str
    description: str = ""


class Question(BaseModel):
    question: str
    header: str = Field(default="", max_length=12)
    options: list[QuestionOption] = Field(min_length=2, max_length=4)
    multiSelect: bool = False


ANSWER_TIMEOUT_SECONDS = 24 * 3600


async def ask_user_question(ctx: RunContext[TurnDeps], questions: list[Question]) -> dict[str, Any]:
    """Ask the user 1-4 multiple-choice questions and wait for the answers. Use only when a
    decision truly needs the user; the turn pauses until they answer or decline."""
    if not 1 <= len(questions) <= 4:
        raise ToolFailed("ask 1 to 4 questions")
    topic = answer_topic(ctx.tool_call_id or "")
    waiting = ctx.deps.wait_for_answer(
        DBOS.recv_async(topic, timeout_seconds=ANSWER_TIMEOUT_SECONDS)
    )
    answer = await waiting
    if answer is None:
        raise ToolFailed("The user did not answer in time.")
    if not isinstance(answer, dict):
        return {"answers": answer}
    return answer


async def _unless_read_only(
    ctx: RunContext[TurnDeps], tool_def: ToolDefinition
) -> ToolDefinition | None:
    return None if ctx.deps.read_only else tool_def


async def _unless_headless(
    ctx: RunContext[TurnDeps], tool_def: ToolDefinition
) -> ToolDefinition | None:
    return None if ctx.deps.headless else tool_def


def sandbox_toolset(*, with_client_tools: bool) -> FunctionToolset[TurnDeps]:
    """The tools of a turn. Read-only runs (the ``explorer`` subagent) get no write/edit;
    headless runs and subagents get no client tool (nobody is there to answer)."""
    tools: list[Tool[TurnDeps]] = [
        Tool(bash), Tool(read), Tool(write, prepare=_unless_read_only),
        Tool(edit, prepare=_unless_read_only), Tool(grep), Tool(glob), Tool(todo_write),
        Tool(skill),
    ]  # fmt: skip
    if with_client_tools:
        tools.append(Tool(ask_user_question, prepare=_unless_headless))
    return FunctionToolset(tools, id="sandbox" if with_client_tools else "sandbox-subagent")


__all__ = [
    "TurnStopped",
    "ask_user_question",
    "bash",
    "edit",
    "glob",
    "grep",
    "read",
    "sandbox_toolset",
    "skill",
    "todo_write",
    "workspace_path",
    "write",
]
