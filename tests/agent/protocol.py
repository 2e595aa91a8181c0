"""A checker for the AI SDK v6 UI message stream, applied to every stream the tests read."""

from __future__ import annotations

from typing import Any

KNOWN = {
    "start", "finish", "start-step", "finish-step", "text-start", "text-delta", "text-end",
    "reasoning-start", "reasoning-delta", "reasoning-end", "tool-input-start",
    "tool-input-delta", "tool-input-available", "tool-input-error", "tool-output-available",
    "tool-output-error", "error", "message-metadata", "abort", "tool-approval-request",
    "tool-output-denied",
}  # fmt: skip


def check_protocol(chunks: list[dict[str, Any]]) -> None:
    """Order and ids: one ``start`` first and one ``finish`` last, steps balanced and never
    nested, text/reasoning parts opened before their deltas and closed once, every tool call
    announced before its input is available and given exactly one outcome (preliminary outputs
    of a running call before it)."""
    types = [c["type"] for c in chunks]
    for t in types:
        assert t in KNOWN or t.startswith("data-"), f"unknown chunk type {t}"
    assert types[0] == "start", types[:3]
    assert types.count("start") == 1, types
    assert types[-1] == "finish", types[-3:]
    assert types.count("finish") == 1, types
    in_step = False
    open_parts: dict[str, str] = {}
    closed_parts: set[str] = set()
    tools: dict[str, str] = {}
    for c in chunks:
        t = c["type"]
        if t == "start-step":
            assert not in_step, "start-step inside a step"
            in_step = True
        elif t == "finish-step":
            assert in_step, "finish-step outside a step"
            assert not open_parts, f"step finished with open parts {open_parts}"
            in_step = False
        elif t.endswith("-start") and t.split("-")[0] in ("text", "reasoning"):
            assert in_step, f"{t} outside a step"
            assert c["id"] not in open_parts and c["id"] not in closed_parts, c
            open_parts[c["id"]] = t.split("-")[0]
        elif t.endswith("-delta") and t.split("-")[0] in ("text", "reasoning"):
            assert open_parts.get(c["id"]) == t.split("-")[0], f"delta for a closed part: {c}"
        elif t.endswith("-end") and t.split("-")[0] in ("text", "reasoning"):
            assert open_parts.pop(c["id"], None) == t.split("-")[0], c
            closed_parts.add(c["id"])
        elif t == "tool-input-start":
            assert in_step and c["toolCallId"] not in tools, c
            tools[c["toolCallId"]] = "streaming"
        elif t == "tool-input-delta":
            assert tools.get(c["toolCallId"]) == "streaming", c
        elif t in ("tool-input-available", "tool-input-error"):
            assert tools.get(c["toolCallId"]) in ("streaming", None), c
            tools[c["toolCallId"]] = "available" if t == "tool-input-available" else "done"
        elif t == "tool-approval-request":
            assert tools.get(c["toolCallId"]) == "available", f"approval before input: {c}"
            tools[c["toolCallId"]] = "approval"
        elif t == "tool-output-available" and c.get("preliminary"):  # replaced by the next
            assert tools.get(c["toolCallId"]) == "available", f"preliminary output late: {c}"
        elif t in ("tool-output-available", "tool-output-error", "tool-output-denied"):
            assert tools.get(c["toolCallId"]) in ("available", "approval"), f"output early: {c}"
            tools[c["toolCallId"]] = "done"
    assert not in_step, "stream ended inside a step"
    assert not open_parts, f"parts never closed: {open_parts}"
    # A response may end where calls wait for approval (the turn goes on, ADR 14).
    unfinished = {k: v for k, v in tools.items() if v not in ("done", "approval")}
    assert not unfinished, f"tool calls without an outcome: {unfinished}"


def tool_outputs(chunks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each tool call's outcome (its final output or error, not a preliminary output)."""
    return {
        c["toolCallId"]: c
        for c in chunks
        if c["type"].startswith("tool-output-") and not c.get("preliminary")
    }


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
