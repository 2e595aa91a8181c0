"""What a client may store as an assistant message (``POST …/chats/{chatId}/messages``).

A chat's assistant messages go back to the model as history, read by pydantic-ai's Vercel
adapter, which takes ``providerMetadata`` (provider details, ids, signatures), ``file`` parts and
some ``data-*`` parts (compaction summaries, model settings, enqueued messages) as its own
records (ADR 11). Until clients could write them, assistant messages were the service's own. So
a client's message is rebuilt from what the service's replies hold (``sink.MessageBuilder``):
``step-start``; ``text`` and ``reasoning`` (text, state); ``tool-<name>`` (toolCallId, state,
input, output, errorText, approval); ``data-<name>`` (id, data). Any other part, a file item in
a tool's input or output, or a NUL anywhere is a 400 naming the part. A ``data-*`` part that
pydantic-ai reads as a record is kept only as the service stored it in that same message.
"""

from __future__ import annotations

import json
from typing import Any

from agent_sessions.agent.context import COMPACTION_KEY
from agent_sessions.agent.user_parts import check_no_file_items
from agent_sessions.exceptions import InvalidInput

TOOL_STATES = frozenset(
    {
        "input-streaming", "input-available", "approval-requested", "approval-responded",
        "output-available", "output-error", "output-denied",
    }
)  # fmt: skip
"""The AI SDK's tool part states."""
TEXT_STATES = frozenset({"streaming", "done"})
RECORD_TYPES = frozenset(
    {
        "data-compaction", "data-tool-availability-delta", "data-capability-load-delta",
        "data-model-settings-delta", "data-enqueued-messages",
    }
)  # fmt: skip
"""``data-*`` parts pydantic-ai's ``load_messages`` turns into history records (its ``_utils``
constants; ``tests/agent/test_assistant_parts.py`` checks them against the installed version)."""
_TOOL_FIELDS = ("input", "output", "errorText", "approval")
MAX_NAME = 128


def assistant_message(
    raw: dict[str, Any],
    stored_parts: list[dict[str, Any]] | None = None,
    stored_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The message to store: ``{id, role: "assistant", parts, metadata?}`` rebuilt from ``raw``
    (already shaped by the API schema). ``stored_parts``: the parts stored under the same id,
    whose record parts may come back unchanged. ``metadata.compaction`` is the service's own
    (a summary the next turn sends the model as a system message, ADR 15): a client's is
    dropped, the stored one kept."""
    kept_records = {
        _canonical(p) for p in stored_parts or [] if isinstance(p, dict) and _is_record(p)
    }
    parts = [_part(p, i, kept_records) for i, p in enumerate(raw["parts"])]
    message: dict[str, Any] = {"id": raw["id"], "role": "assistant", "parts": parts}
    metadata = dict(raw.get("metadata") or {})
    metadata.pop(COMPACTION_KEY, None)
    if stored_metadata and COMPACTION_KEY in stored_metadata:
        metadata[COMPACTION_KEY] = stored_metadata[COMPACTION_KEY]
    if metadata or raw.get("metadata") is not None:
        message["metadata"] = metadata
    if _has_nul(message):
        raise InvalidInput("The message contains a NUL character")
    return message


def _part(part: dict[str, Any], index: int, kept_records: set[str]) -> dict[str, Any]:
    kind = part.get("type")
    where = f"parts[{index}]"
    if not isinstance(kind, str):
        raise InvalidInput(f"Invalid {where}.type: must be a string")
    if kind == "step-start":
        return {"type": kind}
    if kind in ("text", "reasoning"):
        text, state = part.get("text"), part.get("state")
        if not isinstance(text, str):
            raise InvalidInput(f"Invalid {where}.text: must be a string")
        out: dict[str, Any] = {"type": kind, "text": text}
        if state is not None:
            if state not in TEXT_STATES:
                raise InvalidInput(f"Invalid {where}.state: {state!r}")
            out["state"] = state
        return out
    if kind.startswith("tool-") and _name_ok(kind[5:]):
        call_id, state = part.get("toolCallId"), part.get("state")
        if not isinstance(call_id, str) or not call_id or len(call_id) > MAX_NAME:
            raise InvalidInput(f"Invalid {where}.toolCallId: a non-empty string is required")
        if state not in TOOL_STATES:
            raise InvalidInput(f"Invalid {where}.state: {state!r}")
        out = {"type": kind, "toolCallId": call_id, "state": state}
        for field in _TOOL_FIELDS:
            if field in part:
                check_no_file_items(part[field], f"{where}.{field}")
                out[field] = part[field]
        return out
    if kind.startswith("data-") and _name_ok(kind[5:]):
        out = {"type": kind, "data": part.get("data")}
        if "id" in part:
            if not isinstance(part["id"], str):
                raise InvalidInput(f"Invalid {where}.id: must be a string")
            out["id"] = part["id"]
        if kind in RECORD_TYPES and _canonical(out) not in kept_records:
            raise InvalidInput(
                f"Invalid {where}: a {kind} part is the service's own record; it can only be "
                "sent back as the service stored it"
            )
        return out
    raise InvalidInput(
        f"Invalid {where}: a part of type {kind!r} cannot be stored in an assistant message "
        "(step-start, text, reasoning, tool-<name> and data-<name> can)"
    )


def _name_ok(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and name.isprintable() and not any(c.isspace() for c in name)


def _is_record(part: dict[str, Any]) -> bool:
    return part.get("type") in RECORD_TYPES


def _canonical(part: dict[str, Any]) -> str:
    keep = {k: part[k] for k in ("type", "id", "data") if k in part}
    return json.dumps(keep, sort_keys=True, separators=(",", ":"))


def _has_nul(value: Any) -> bool:
    """PostgreSQL's jsonb cannot hold ``\\u0000``: refused on both backends, as a 400."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
