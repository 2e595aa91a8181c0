"""Load a hooks file and run the command hooks matching an event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.inflight import hold

DEFAULT_TIMEOUT = 60.0
MAX_OUTPUT = 64 * 1024
"""Bytes kept of a hook's stdout and of its stderr."""


class HookConfigError(AgentSessionsError):
    """The hooks file is missing, not JSON, or not in the documented shape."""


@dataclass(frozen=True)
class HookCommand:
    """One ``{"type": "command"}`` hook."""

    command: str
    timeout: float
    fail_closed: bool


@dataclass(frozen=True)
class _Matcher:
    pattern: re.Pattern[str] | None
    commands: tuple[HookCommand, ...]


@dataclass
class HookOutcome:
    """What the hooks of one event said: blocked (with reasons) and problems worth reporting."""

    blocked: bool = False
    reasons: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: HookOutcome) -> None:
        """Add what another source's hooks said about the same event."""
        self.blocked = self.blocked or other.blocked
        self.reasons += other.reasons
        self.problems += other.problems
        self.outputs += other.outputs


def parse_hooks(raw: Any, source: str) -> dict[str, tuple[_Matcher, ...]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("hooks", {}), dict):
        raise HookConfigError(f"{source}: expected {{'hooks': {{'<Event>': [...]}}}}")
    events: dict[str, tuple[_Matcher, ...]] = {}
    for event, entries in raw.get("hooks", {}).items():
        if not isinstance(entries, list):
            raise HookConfigError(f"{source}: hooks.{event} must be a list")
        matchers = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("hooks"), list):
                raise HookConfigError(f"{source}: each hooks.{event} entry needs a 'hooks' list")
            pattern = entry.get("matcher") or None
            try:
                compiled = re.compile(pattern) if pattern not in (None, "*") else None
            except re.error as err:
                raise HookConfigError(f"{source}: bad matcher {pattern!r}: {err}") from None
            commands = []
            for hook in entry["hooks"]:
                if not isinstance(hook, dict) or hook.get("type") != "command":
                    raise HookConfigError(
                        f"{source}: only {{'type': 'command'}} hooks are supported"
                    )
                if not isinstance(hook.get("command"), str) or not hook["command"].strip():
                    raise HookConfigError(f"{source}: a command hook needs a 'command' string")
                timeout = hook.get("timeout", DEFAULT_TIMEOUT)
                if (
                    isinstance(timeout, bool)
                    or not isinstance(timeout, int | float)
                    or timeout <= 0
                ):
                    raise HookConfigError(f"{source}: a hook's 'timeout' must be positive seconds")
                commands.append(
                    HookCommand(
                        hook["command"], float(timeout), bool(hook.get("failClosed", False))
                    )
                )
            matchers.append(_Matcher(compiled, tuple(commands)))
        events[event] = tuple(matchers)
    return events


class Hooks:
    """Parsed hooks of one source; :meth:`commands` lists those an event and subject select."""

    def __init__(self, events: dict[str, tuple[_Matcher, ...]] | None = None) -> None:
        self._events = events or {}

    def has(self, event: str) -> bool:
        return bool(self._events.get(event))

    def configured(self) -> bool:
        """Whether any event has hooks."""
        return any(self._events.values())

    def commands(self, event: str, *subjects: str) -> list[HookCommand]:
        """The commands of ``event`` whose matcher matches one of ``subjects`` in full (no
        matcher, an empty one or ``*`` matches everything), in the file's order."""
        return [
            cmd
            for matcher in self._events.get(event, ())
            if matcher.pattern is None or any(matcher.pattern.fullmatch(s) for s in subjects)
            for cmd in matcher.commands
        ]


class HookRunner(Hooks):
    """Runs operator hooks on the host. An empty runner (no file) does nothing."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        if path is not None:
            try:
                raw = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise HookConfigError(f"cannot read hooks file {path}: {err}") from None
            self._events = parse_hooks(raw, str(path))

    async def run(
        self, event: str, payload: dict[str, Any], *, subject: str = "", cwd: str | None = None
    ) -> HookOutcome:
        outcome = HookOutcome()
        body = json.dumps({"hook_event_name": event, **payload}).encode()
        for cmd in self.commands(event, subject):
            await self._run_one(cmd, body, cwd, outcome)
        return outcome

    async def _run_one(
        self, cmd: HookCommand, body: bytes, cwd: str | None, outcome: HookOutcome
    ) -> None:
        proc = await asyncio.create_subprocess_shell(
            cmd.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if not k.startswith("AGENT_SESSIONS_")},
            start_new_session=True,
        )
        hold(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(body), cmd.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            problem(outcome, cmd, f"hook timed out after {cmd.timeout:g}s: {cmd.command}")
            return
        judge(
            outcome,
            cmd,
            proc.returncode,
            out[:MAX_OUTPUT].decode(errors="replace"),
            err[:MAX_OUTPUT].decode(errors="replace"),
        )


def judge(
    outcome: HookOutcome, cmd: HookCommand, returncode: int | None, stdout: str, stderr: str
) -> None:
    """What a finished hook said (Claude Code's contract): exit 2 blocks with stderr as the
    reason, another non-zero exit is a problem (blocking only ``failClosed``), exit 0 may print
    a JSON object whose ``decision: block`` blocks with its ``reason``."""
    stderr = stderr.strip()
    if returncode == 2:
        outcome.blocked = True
        outcome.reasons.append(stderr or f"blocked by hook: {cmd.command}")
    elif returncode != 0:
        problem(outcome, cmd, f"hook exited {returncode}: {stderr or cmd.command}")
    else:
        text = stdout.strip()
        if text.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                parsed = json.loads(text)
                if not isinstance(parsed, dict):
                    return
                outcome.outputs.append(parsed)
                if parsed.get("decision") == "block":
                    outcome.blocked = True
                    outcome.reasons.append(str(parsed.get("reason") or "blocked by hook"))


def problem(outcome: HookOutcome, cmd: HookCommand, message: str) -> None:
    outcome.problems.append(message)
    if cmd.fail_closed:
        outcome.blocked = True
        outcome.reasons.append(message)
