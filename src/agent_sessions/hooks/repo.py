"""Hooks a repository declares in its ``.claude/settings.json`` (Claude Code's format), run
*inside the session's sandbox*, only when the operator sets ``AGENT_SESSIONS_ALLOW_REPO_HOOKS``.

The repository is not trusted, so nothing of it runs on the host: its commands go through the
provider's ``exec``, as the agent's ``bash`` tool does, with the sandbox's user, limits and
network; their timeout is capped (:data:`MAX_TIMEOUT`) and their output cut like an operator
hook's. The file is read through the provider's bounded ``read_file`` (no link followed); what
cannot be used (not JSON, an event or hook type not supported here, a bad matcher) is left out
with a warning, never failing a turn or a lifecycle step. A missing file means no hooks.

A hook reads the event's JSON on stdin, as in Claude Code: the service puts it in the
environment and a small wrapper pipes it into ``bash -c <command>`` (an ``exec`` has no stdin),
so the input is bounded (:data:`INPUT_MAX_BYTES`: longer strings are cut, with
``input_truncated: true``). Tool events name tools as Claude Code does (``Bash``, ``Write``…)
and add snake_case twins of camelCase arguments (``file_path`` for ``filePath``), so hooks
written for Claude Code work unchanged; a matcher may use either name.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.hooks.runner import (
    MAX_OUTPUT,
    HookCommand,
    HookConfigError,
    HookOutcome,
    Hooks,
    judge,
    parse_hooks,
    problem,
)
from agent_sessions.sandbox import FileTooLarge, PathNotFound, Sandbox

SETTINGS_PATH = ".claude/settings.json"
SETTINGS_MAX_BYTES = 64 * 1024
"""A settings file holds a few hooks: a bigger one is refused (with a warning)."""
EVENTS = frozenset(
    {"PreToolUse", "PostToolUse", "UserPromptSubmit", "Stop", "SessionStart", "SessionEnd"}
)
"""The Claude Code events this service raises; a repository's others are skipped."""
MAX_TIMEOUT = 600.0
"""Seconds a repository hook may run at most, whatever its ``timeout`` says."""
INPUT_MAX_BYTES = 64 * 1024
"""Bytes of event JSON a hook reads at most (an environment string must stay well under
Linux's 128 KiB per string)."""
PROJECT_DIR = "/workspace"

CLAUDE_TOOL_NAMES = {
    "bash": "Bash", "read": "Read", "write": "Write", "edit": "Edit", "grep": "Grep",
    "glob": "Glob", "todo_write": "TodoWrite", "task": "Task", "skill": "Skill",
    "ask_user_question": "AskUserQuestion",
}  # fmt: skip
"""Our tools under the names Claude Code gives its own."""

_WRAPPER = (
    'printf %s "$AGENT_SESSIONS_HOOK_INPUT" | '
    "env -u AGENT_SESSIONS_HOOK_INPUT -u AGENT_SESSIONS_HOOK_COMMAND "
    'bash -c "$AGENT_SESSIONS_HOOK_COMMAND"'
)
_CUT = "…[truncated]"
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def read_config(raw: bytes | None) -> tuple[dict[str, Any], list[str]]:
    """A settings file's content → the hooks this service can run (a JSON-able config in the
    hooks file's shape, recorded as is by a DBOS step) and warnings about the rest."""
    if raw is None:
        return {}, []
    try:
        data = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError alike
        return {}, [f"{SETTINGS_PATH} is not JSON ({err}): no repository hooks run"]
    if not isinstance(data, dict):
        return {}, [f"{SETTINGS_PATH} is not a JSON object: no repository hooks run"]
    hooks = data.get("hooks")
    if hooks is None:
        return {}, []
    if not isinstance(hooks, dict):
        return {}, [f"{SETTINGS_PATH}: 'hooks' is not an object: no repository hooks run"]
    kept: dict[str, list[dict[str, Any]]] = {}
    warnings: list[str] = []
    for event, entries in hooks.items():
        if event not in EVENTS:
            warnings.append(f"{SETTINGS_PATH}: {event} hooks are not supported here, skipped")
            continue
        if not isinstance(entries, list):
            warnings.append(f"{SETTINGS_PATH}: hooks.{event} is not a list, skipped")
            continue
        for entry in entries:
            usable = _entry(event, entry, warnings)
            if usable is not None:
                kept.setdefault(event, []).append(usable)
    return ({"hooks": kept} if kept else {}), warnings


def _entry(event: str, entry: Any, warnings: list[str]) -> dict[str, Any] | None:
    """One matcher entry, its command hooks only and their timeouts capped; None if unusable."""
    if not isinstance(entry, dict) or not isinstance(entry.get("hooks"), list):
        warnings.append(f"{SETTINGS_PATH}: a hooks.{event} entry has no 'hooks' list, skipped")
        return None
    commands = []
    for hook in entry["hooks"]:
        if not isinstance(hook, dict) or hook.get("type") != "command":
            kind = hook.get("type") if isinstance(hook, dict) else None
            warnings.append(f"{SETTINGS_PATH}: a {kind!r} hook of {event} is not supported here")
            continue
        timeout = hook.get("timeout", None)
        command = {"type": "command", "command": hook.get("command")}
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            command["timeout"] = min(float(timeout), MAX_TIMEOUT)
        elif timeout is not None:
            command["timeout"] = timeout  # parse_hooks names the problem
        commands.append(command)
    if not commands:
        return None
    usable = {"matcher": entry.get("matcher"), "hooks": commands}
    try:
        parse_hooks({"hooks": {event: [usable]}}, SETTINGS_PATH)
    except HookConfigError as err:
        warnings.append(f"{err.message}; skipped")
        return None
    return usable


async def read_settings(sandbox: Sandbox) -> tuple[dict[str, Any], list[str]]:
    """The workspace's ``.claude/settings.json``, read bounded through the provider: its
    usable hooks and warnings (a missing file is no hooks and no warning)."""
    try:
        raw: bytes | None = await sandbox.read_file(SETTINGS_PATH, max_bytes=SETTINGS_MAX_BYTES)
    except PathNotFound:
        raw = None
    except FileTooLarge:
        return {}, [f"{SETTINGS_PATH} is over {SETTINGS_MAX_BYTES} bytes: no repository hooks run"]
    except AgentSessionsError as err:
        return {}, [f"{SETTINGS_PATH} cannot be read ({err.message}): no repository hooks run"]
    return read_config(raw)


class RepoHooks(Hooks):
    """A repository's usable hooks (:func:`read_config`), run in its session's sandbox."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(parse_hooks(config, SETTINGS_PATH) if config else {})

    async def run(
        self, sandbox: Sandbox, event: str, payload: dict[str, Any], *, subject: str = ""
    ) -> HookOutcome:
        outcome = HookOutcome()
        claude = CLAUDE_TOOL_NAMES.get(subject, subject)
        commands = self.commands(event, subject, claude)
        if not commands:
            return outcome
        body = bounded_input(claude_input(event, payload))
        for cmd in commands:
            try:
                await self._run_one(sandbox, cmd, body, outcome)
            except AgentSessionsError as err:  # the sandbox is gone or refused the command
                problem(outcome, cmd, f"hook could not run: {err.message}")
        outcome.problems = [f"{SETTINGS_PATH}: {p}" for p in outcome.problems]
        return outcome

    @staticmethod
    async def _run_one(sandbox: Sandbox, cmd: HookCommand, body: str, outcome: HookOutcome) -> None:
        env = {
            "AGENT_SESSIONS_HOOK_INPUT": body,
            "AGENT_SESSIONS_HOOK_COMMAND": cmd.command,
            "CLAUDE_PROJECT_DIR": PROJECT_DIR,
        }
        timeout = min(cmd.timeout, MAX_TIMEOUT)
        r = await sandbox.exec(_WRAPPER, timeout=timeout, env=env, max_output=MAX_OUTPUT)
        if r.timed_out:
            problem(outcome, cmd, f"hook timed out after {timeout:g}s: {cmd.command}")
        else:
            judge(outcome, cmd, r.exit_code, r.stdout, r.stderr)


def claude_input(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The event as Claude Code hooks expect it: its tool names, snake_case argument twins."""
    body: dict[str, Any] = {"hook_event_name": event, **payload}
    name = body.get("tool_name")
    if isinstance(name, str):
        body["tool_name"] = CLAUDE_TOOL_NAMES.get(name, name)
    tool_input = body.get("tool_input")
    if isinstance(tool_input, dict):
        twins = {_CAMEL.sub(r"_\1", k).lower(): v for k, v in tool_input.items()}
        body["tool_input"] = {**twins, **tool_input}
    return body


def bounded_input(body: dict[str, Any]) -> str:
    """``body`` as JSON of at most :data:`INPUT_MAX_BYTES`: strings cut shorter and shorter
    until it fits (``input_truncated: true`` then says so)."""
    text = json.dumps(body)
    if len(text.encode()) <= INPUT_MAX_BYTES:
        return text
    for limit in (16384, 4096, 1024, 256, 64):
        cut = _cut_strings(copy.deepcopy(body), limit)
        cut["input_truncated"] = True
        text = json.dumps(cut)
        if len(text.encode()) <= INPUT_MAX_BYTES:
            return text
    keep = ("hook_event_name", "session_id", "cwd", "tool_name", "source", "reason")
    return json.dumps({k: body[k] for k in keep if k in body} | {"input_truncated": True})


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + _CUT
    if isinstance(value, dict):
        return {k: _cut_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, limit) for v in value]
    return value
