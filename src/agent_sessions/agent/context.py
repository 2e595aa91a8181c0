"""Context management: a conversation nearing its model's context window is fitted back into it
before the turn's first model request (ADR 15).

The history is measured as characters / 4 of what the model receives (texts, tool inputs and
outputs; a file counts a flat :data:`FILE_TOKENS`). The usage stored per run cannot stand in:
it sums every request of a run, so a turn of ten steps reports about ten times its context.
Past ``CONTEXT_COMPACT_AT`` of the window, in this order:

1. *prune*: tool outputs older than the last ``CONTEXT_TOOL_OUTPUT_TURNS`` turns (a turn is a
   user message and the replies to it) are replaced by a short placeholder, in what the model
   receives only: the stored messages keep every output;
2. *summarise*, if that is not enough: every turn but the last ``CONTEXT_KEEP_TURNS`` is
   summarised by one call of the chat's own model, made inside the DBOS step
   ``compact_context`` (a recovered turn reuses its recorded result, never asks again), and
   stored in the metadata of the last message it covers, ``metadata.compaction``:
   ``{summary, summarizedThrough: <that message's id>, firstKeptMessageId, …}``. Later turns
   start from the latest stored summary and the messages after it, without summarising again
   until those fill the window in turn (the new summary then covers the earlier one).

A client draws its "context compacted" divider after the message that carries the metadata; a
live stream also gets a transient ``data-compaction`` chunk. Deleting or editing a message the
summary covers deletes the message that carries it (those routes cut a chat's tail), so a
summary never outlives what it summarises.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from dbos import DBOS
from pydantic_ai.messages import ModelMessage, ModelRequest, SystemPromptPart

from agent_sessions.agent.models import build_model, split
from agent_sessions.agent.stream import write_chunks
from agent_sessions.faults import fault_point
from agent_sessions.lifecycle.context import current
from agent_sessions.settings import Settings
from agent_sessions.store import turns as store
from agent_sessions.store.models import utcnow

__all__ = [
    "COMPACTION_KEY",
    "SUMMARY_INSTRUCTIONS",
    "Fitted",
    "context_window",
    "estimate_tokens",
    "fit",
    "prune_tool_outputs",
    "with_summary",
]

log = logging.getLogger(__name__)

COMPACTION_KEY = "compaction"
FILE_TOKENS = 1_000
"""What one attached file is counted as (providers charge images and PDFs by their own rules,
not by their bytes)."""
MESSAGE_TOKENS = 4
"""Each message's own overhead (role, separators)."""
PRUNE_AT_CHARS = 200
"""Shorter tool outputs are kept: a placeholder would save next to nothing."""
PRUNED = "[output pruned from the context ({size} characters); run the tool again if needed]"
TRANSCRIPT_TOOL_CHARS = 2_000
TRANSCRIPT_TEXT_CHARS = 4_000
LOOKUP_FLOOR_TOKENS = 2_000
"""Below this no window is looked up (a lookup in the price data imports it, ~0.5 s once per
process): every chat model has a larger window. A window set by ``CONTEXT_WINDOWS`` counts
always."""
SUMMARY_TIMEOUT_SECONDS = 180.0

SUMMARY_INSTRUCTIONS = (
    "You compact the conversation of a coding agent with its user, so that the agent can go on "
    "without the earlier messages. Write a concise summary that keeps what the agent needs: "
    "the user's requests and constraints, decisions taken, files created or changed (paths), "
    "commands run and what they showed, errors and how they were solved, and what is still "
    "open. Facts only, no preamble; do not address the user."
)
SUMMARY_PREFIX = (
    "The earlier part of this conversation was compacted to save context. Its summary:\n\n"
)


@dataclass(frozen=True)
class Fitted:
    """What a turn gives the model: these UI messages, after the summary (if any)."""

    messages: list[dict[str, Any]]
    summary: str | None = None
    usage: dict[str, Any] | None = None
    """The summary's usage when this turn wrote it (``compact_context``'s return value: a
    recovered turn gets the recorded one, never a second measure), to count in the run's."""


# --- measuring ---------------------------------------------------------------------------------


def _json_chars(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    try:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    except (TypeError, ValueError):
        return len(str(value))


def _is_tool(part: dict[str, Any]) -> bool:
    kind = str(part.get("type", ""))
    return kind.startswith("tool-") or kind == "dynamic-tool"


def message_tokens(message: dict[str, Any]) -> int:
    """The estimated tokens of one stored UI message as the model would receive it (``data-*``
    parts and step markers never reach a model)."""
    chars, files = 0, 0
    for part in message.get("parts") or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "reasoning"):
            chars += len(str(part.get("text") or ""))
        elif kind == "file":
            files += 1
        elif _is_tool(part):
            chars += len(str(kind)) + _json_chars(part.get("input"))
            chars += _json_chars(part.get("output")) + len(str(part.get("errorText") or ""))
    return chars // 4 + files * FILE_TOKENS + MESSAGE_TOKENS


def estimate_tokens(messages: list[dict[str, Any]], summary: str | None = None) -> int:
    """The estimated tokens of a history (characters / 4)."""
    own = len(SUMMARY_PREFIX + summary) // 4 + MESSAGE_TOKENS if summary else 0
    return own + sum(message_tokens(m) for m in messages)


_windows: dict[str, int | None] = {}


def _listed_window(model_id: str) -> int | None:
    """The model's context window in genai-prices' data (shipped with pydantic-ai), if listed."""
    if model_id not in _windows:
        window = None
        try:
            from genai_prices.data_snapshot import get_snapshot

            provider, name = split(model_id)
            window = (
                get_snapshot().find_provider_model(name, None, provider, None)[1].context_window
            )
        except Exception:  # not listed (a served model, a stand-in): the default applies
            window = None
        _windows[model_id] = window
    return _windows[model_id]


async def context_window(settings: Settings, model_id: str) -> int:
    """The model's context window in tokens: ``CONTEXT_WINDOWS``, else the price data's,
    else ``CONTEXT_WINDOW_DEFAULT``."""
    if model_id in settings.context_windows:
        return settings.context_windows[model_id]
    if model_id not in _windows:
        await asyncio.to_thread(_listed_window, model_id)
    return _windows.get(model_id) or settings.context_window_default


# --- the parts of a compaction -----------------------------------------------------------------


def _turn_starts(messages: list[dict[str, Any]]) -> list[int]:
    return [i for i, m in enumerate(messages) if m.get("role") == "user"]


def prune_tool_outputs(messages: list[dict[str, Any]], keep_turns: int) -> list[dict[str, Any]]:
    """The messages with the outputs of tool calls older than the last ``keep_turns`` turns
    replaced by a placeholder (copies; the stored messages are not touched)."""
    starts = _turn_starts(messages)
    if keep_turns > 0 and len(starts) < keep_turns:
        return messages
    cut = starts[-keep_turns] if keep_turns > 0 else len(messages)
    out = []
    for i, message in enumerate(messages):
        if i >= cut or message.get("role") != "assistant":
            out.append(message)
            continue
        parts = []
        for part in message.get("parts") or ():
            if isinstance(part, dict) and _is_tool(part) and "output" in part:
                size = _json_chars(part["output"])
                if size > PRUNE_AT_CHARS:
                    part = {**part, "output": PRUNED.format(size=size)}
            parts.append(part)
        out.append({**message, "parts": parts})
    return out


def stored_compaction(messages: list[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """The latest summary stored in the history: the index of the message carrying it, and it."""
    for i in range(len(messages) - 1, -1, -1):
        done = compaction_of(messages[i])
        if done is not None:
            return i, done
    return None


def compaction_of(message: dict[str, Any]) -> dict[str, Any] | None:
    metadata = message.get("metadata")
    done = metadata.get(COMPACTION_KEY) if isinstance(metadata, dict) else None
    if (
        isinstance(done, dict)
        and isinstance(done.get("summary"), str)
        and done.get("summarizedThrough") == message.get("id")
    ):
        return done
    return None


def transcript(messages: list[dict[str, Any]], earlier: str | None, budget_chars: int) -> str:
    """The messages as plain text for the summariser (it has no tools, so tool calls cannot go
    as calls), long outputs cut, the oldest lines left out past ``budget_chars``."""
    lines: list[str] = []
    for message in messages:
        who = "User" if message.get("role") == "user" else "Assistant"
        for part in message.get("parts") or ():
            if not isinstance(part, dict):
                continue
            kind = str(part.get("type", ""))
            if kind == "text" and part.get("text"):
                lines.append(f"{who}: {_cut(str(part['text']), TRANSCRIPT_TEXT_CHARS)}")
            elif kind == "file":
                media_type = part.get("mediaType") or "unknown type"
                lines.append(f"{who} attached a file {part.get('filename') or ''} ({media_type})")
            elif _is_tool(part):
                name = part.get("toolName") or kind.removeprefix("tool-")
                args = _cut(
                    json.dumps(part.get("input"), ensure_ascii=False), TRANSCRIPT_TOOL_CHARS
                )
                lines.append(f"Assistant called {name} {args}")
                if "output" in part:
                    result = part["output"]
                    text = (
                        result
                        if isinstance(result, str)
                        else json.dumps(result, ensure_ascii=False)
                    )
                    lines.append(f"Result: {_cut(text, TRANSCRIPT_TOOL_CHARS)}")
                elif part.get("errorText"):
                    lines.append(f"Error: {_cut(str(part['errorText']), TRANSCRIPT_TOOL_CHARS)}")
    kept: list[str] = []
    size = len(earlier or "")
    for line in reversed(lines):
        size += len(line) + 2
        if size > budget_chars and kept:
            kept.append("[older messages left out]")
            break
        kept.append(line)
    head = f"<earlier-summary>\n{earlier}\n</earlier-summary>\n\n" if earlier else ""
    body = "\n\n".join(reversed(kept))
    return f"{head}<conversation>\n{body}\n</conversation>\n\nSummarise the above."


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} […{len(text) - limit} characters cut…] {text[-half:]}"


def with_summary(summary: str | None, history: list[ModelMessage]) -> list[ModelMessage]:
    """The model history with the summary first, as a system part (not the user's words)."""
    if summary is None:
        return history
    return [ModelRequest(parts=[SystemPromptPart(SUMMARY_PREFIX + summary)]), *history]


# --- the turn's hook ---------------------------------------------------------------------------


async def fit(run: store.RunView, settings: Settings, history: list[dict[str, Any]]) -> Fitted:
    """The history to give the turn's model (the stored UI messages, the new prompt last).

    Deterministic given its inputs and the ``compact_context`` step's recorded result, so a
    recovered turn rebuilds the same history (the stream's step numbering depends on it)."""
    summary: str | None = None
    active = history
    found = stored_compaction(history)
    if found is not None:
        summary, active = found[1]["summary"], history[found[0] + 1 :]
    tokens = estimate_tokens(active, summary)
    floor = min(LOOKUP_FLOOR_TOKENS, settings.context_window_default * settings.context_compact_at)
    if tokens <= floor and run.model_id not in settings.context_windows:
        return Fitted(active, summary)
    window = await context_window(settings, run.model_id)
    limit = int(window * settings.context_compact_at)
    if tokens <= limit:
        return Fitted(active, summary)
    pruned = prune_tool_outputs(active, settings.context_tool_output_turns)
    if estimate_tokens(pruned, summary) <= limit:
        return Fitted(pruned, summary)
    boundary = _boundary(pruned, settings.context_keep_turns, limit)
    if boundary is None:  # one turn alone: nothing older to summarise
        return Fitted(pruned, summary)
    through, first_kept = active[boundary - 1], active[boundary]
    record = {
        "summarizedThrough": through.get("id"),
        "firstKeptMessageId": first_kept.get("id"),
        "summarizedMessages": boundary
        + (_count(found[1].get("summarizedMessages")) if found else 0),
        "estimatedTokens": tokens,
        "contextWindow": window,
        "model": run.model_id,
        "runId": run.id,
    }
    prompt = transcript(active[:boundary], summary, budget_chars=limit * 4)
    done = await _compact(run, str(through.get("id")), prompt, record, window)
    if done is None:  # the model could not summarise: the pruned history as it is
        return Fitted(pruned, summary)
    shown = {k: v for k, v in done.items() if k != "summary"}
    await write_chunks(
        [{"type": "data-compaction", "id": "compaction", "data": shown, "transient": True}]
    )
    usage = done.get("usage") if done.get("runId") == run.id else None
    return Fitted(pruned[boundary:], done["summary"], usage if isinstance(usage, dict) else None)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _boundary(messages: list[dict[str, Any]], keep_turns: int, limit: int) -> int | None:
    """Where the kept turns start: the last ``keep_turns`` turns, fewer when they alone would
    take more than half the limit; None when no turn is left to summarise."""
    starts = [i for i in _turn_starts(messages) if i > 0]
    keep = min(keep_turns, len(starts))
    while keep > 1 and estimate_tokens(messages[starts[-keep] :]) > limit // 2:
        keep -= 1
    return starts[-keep] if keep >= 1 else None


@DBOS.step(name="compact_context")
async def _compact(
    run: store.RunView, through_id: str, prompt: str, record: dict[str, Any], window: int
) -> dict[str, Any] | None:
    """Summarise and store the summary on the message ``through_id`` (one model call); the
    stored compaction, or None when the model failed. Run again after a crash between the store
    and DBOS's record of the step, it finds its own summary stored and does not ask again."""
    ctx = current()
    stored = await ctx.db.read_call(lambda s: store.message_of(s, run.chat_key, through_id))
    mine = compaction_of(stored) if stored is not None else None
    if mine is not None and mine.get("runId") == run.id:
        return mine
    answer = await summarise(ctx.settings, run.model_id, prompt, max_tokens=window // 8)
    if answer is None:
        return None
    text, usage = answer
    done = {**record, "summary": text, "usage": usage, "createdAt": utcnow().isoformat()}
    kept = await ctx.db.write_call(
        lambda s: store.set_message_metadata(s, run.chat_key, through_id, COMPACTION_KEY, done)
    )
    fault_point("compact-context.stored")
    return done if kept else None


async def summarise(
    settings: Settings, model_id: str, prompt: str, *, max_tokens: int
) -> tuple[str, dict[str, Any]] | None:
    """The model's summary and what it took (tokens; ``costUsd`` as pydantic-ai priced it,
    None when unknown), or None (a failure, a timeout, no text)."""
    from pydantic_ai import Agent
    from pydantic_ai.settings import ModelSettings

    writer: Agent[None, str] = Agent(
        build_model(settings, model_id), instructions=SUMMARY_INSTRUCTIONS
    )
    try:
        async with asyncio.timeout(SUMMARY_TIMEOUT_SECONDS):
            result = await writer.run(
                prompt, model_settings=ModelSettings(max_tokens=max(256, min(max_tokens, 8192)))
            )
    except Exception as err:
        log.warning("the model %s could not summarise the conversation: %s", model_id, err)
        return None
    text = result.output.strip()
    if not text:
        return None
    usage = result.usage
    return text, {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "cachedInputTokens": usage.cache_read_tokens,
        "cacheWriteTokens": usage.cache_write_tokens,
        "costUsd": None if usage.cost is None else float(usage.cost),
    }
