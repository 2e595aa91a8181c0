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
_MAX_OUTPUT = 64 * 1024


class HookConfigError(AgentSessionsError):
    """The hooks file is missing, not JSON, or not in the documented shape."""


@dataclass(frozen=True)
class _Command:
    command: str
    timeout: float
    fail_closed: bool


@dataclass(frozen=True)
class _Matcher:
    pattern: re.Pattern[str] | None
    commands: tuple[_Command, ...]


@dataclass
class HookOutcome:
    """What the hooks of one event said: blocked (with reasons) and problems worth reporting."""

    blocked: bool = False
    reasons: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)


def _parse(raw: Any, source: str) -> dict[str, tuple[_Matcher, ...]]:
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
                commands.append(
                    _Command(
                        hook["command"],
                        float(hook.get("timeout", DEFAULT_TIMEOUT)),
                        bool(hook.get("failClosed", False)),
                    )
                )
            matchers.append(_Matcher(compiled, tuple(commands)))
        events[event] = tuple(matchers)
    return events


class HookRunner:
    """Runs operator hooks on the host. An empty runner (no file) does nothing."""

    def __init__(self, path: Path | None) -> None:
        self._events: dict[str, tuple[_Matcher, ...]] = {}
        if path is not None:
            try:
                raw = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise HookConfigError(f"cannot read hooks file {path}: {err}") from None
            self._events = _parse(raw, str(path))

    def has(self, event: str) -> bool:
        return bool(self._events.get(event))

    async def run(
        self, event: str, payload: dict[str, Any], *, subject: str = "", cwd: str | None = None
    ) -> HookOutcome:
        outcome = HookOutcome()
        body = json.dumps({"hook_event_name": event, **payload}).encode()
        for matcher in self._events.get(event, ()):
            if matcher.pattern is not None and not matcher.pattern.fullmatch(subject):
                continue
            for cmd in matcher.commands:
                await self._run_one(cmd, body, cwd, outcome)
        return outcome

    async def _run_one(
        self, cmd: _Command, body: bytes, cwd: str | None, outcome: HookOutcome
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
            self._problem(outcome, cmd, f"hook timed out after {cmd.timeout:g}s: {cmd.command}")
            return
        stderr = err[:_MAX_OUTPUT].decode(errors="replace").strip()
        if proc.returncode == 2:
            outcome.blocked = True
            outcome.reasons.append(stderr or f"blocked by hook: {cmd.command}")
        elif proc.returncode != 0:
            self._problem(outcome, cmd, f"hook exited {proc.returncode}: {stderr or cmd.command}")
        else:
            text = out[:_MAX_OUTPUT].decode(errors="replace").strip()
            if text.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    parsed = json.loads(text)
                    outcome.outputs.append(parsed)
                    if parsed.get("decision") == "block":
                        outcome.blocked = True
                        outcome.reasons.append(str(parsed.get("reason") or "blocked by hook"))

    @staticmethod
    def _problem(outcome: HookOutcome, cmd: _Command, message: str) -> None:
        outcome.problems.append(message)
        if cmd.fail_closed:
            outcome.blocked = True
            outcome.reasons.append(message)
