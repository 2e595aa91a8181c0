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
        state = part.get("state")
        if state == "output-available":
            renderer.tool_output(name, part.get("output"))
        elif state in ("output-error", "input-error"):
            renderer.tool_error(str(part.get("errorText") or "failed"))
        elif state == "output-denied":
            renderer.tool_error("denied")
        else:
            renderer.tool_error("no result (the turn ended before it)")
