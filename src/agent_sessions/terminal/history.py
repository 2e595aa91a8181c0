"""A chat's stored messages (``GET …/chats/{chatId}``) shown as the live stream showed them,
so ``--session`` and ``/switch`` pick up the conversation where it was left."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent_sessions.terminal.render import Renderer


def show(renderer: Renderer, messages: Iterable[Any]) -> int:
    """Render each stored UI message; returns how many were shown."""
    count = 0
    for message in messages:
        count += 1
        if message.role == "user":
            text = "".join(p.get("text", "") for p in message.parts if p.get("type") == "text")
            renderer.user(text)
            continue
        for part in message.parts:
            _part(renderer, part)
    renderer.newline()
    return count


def _part(renderer: Renderer, part: dict[str, Any]) -> None:
    kind = str(part.get("type", ""))
    if kind == "text" and part.get("text"):
        renderer.text(part["text"])
    elif kind == "reasoning" and part.get("text"):
        renderer.reasoning(part["text"])
    elif kind.startswith("tool-") or kind == "dynamic-tool":
        name = part.get("toolName") or kind.removeprefix("tool-")
        renderer.tool_call(name, part.get("input"))
        result(renderer, name, part)


def result(renderer: Renderer, name: str, part: dict[str, Any]) -> None:
    """A stored tool part's outcome, under its call's header."""
    state = part.get("state")
    if state == "output-available":
        renderer.tool_output(name, part.get("output"))
    elif state in ("output-error", "input-error"):
        renderer.tool_error(str(part.get("errorText") or "failed"))
    elif state == "output-denied":
        renderer.tool_error("denied")
    else:
        renderer.tool_error("no result (the turn ended before it)")


def settle(renderer: Renderer, message: Any) -> None:
    """After a stop: the outcome the server stored for each call the screen left open."""
    for part in message.parts:
        name = renderer.open_calls.pop(str(part.get("toolCallId")), None)
        if name is not None:
            result(renderer, name, part)
