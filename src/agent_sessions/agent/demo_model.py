"""``demo/echo``: a built-in stand-in for a model, so a new install shows the whole loop
without a key. It is not a language model and says so in every reply.

Given a prompt it does what a coding agent would, through the real turn machinery (each tool
call a DBOS step in the session's sandbox, its stream the same UI message stream): it writes
``hello.py``, a script built from the prompt, with the ``write`` tool, runs it with ``bash``,
then streams a short text about what the script printed. What it says next depends only on the
conversation it is handed (the model responses since the last prompt), so a recovered turn
gets the same answers, tool-call ids included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from agent_sessions.exceptions import InvalidInput

LABEL = "[demo model]"
SCRIPT = "hello.py"
RUN = f"python3 {SCRIPT}"
PROMPT_CHARS = 200
"""The part of the prompt the script quotes."""
WORD_SECONDS = 0.015
"""Pause between words of the reply, so that a client sees it arrive as a model's would
(pieces sent together are joined into one chunk by the turn's stream)."""


def build(name: str) -> Model:
    if name != "echo":
        raise InvalidInput(f"Unknown demo model 'demo/{name}' (known: demo/echo)")
    return FunctionModel(_answer, stream_function=_stream, model_name="demo-echo")


def _next(messages: list[ModelMessage], info: AgentInfo) -> ToolCallPart | str:
    """The next response: a tool call, or the closing text."""
    prompt, since = _last_prompt(messages)
    tools = {t.name for t in info.function_tools}
    if not {"write", "bash"} <= tools:  # a text-only request (a title, a commit message)
        return f"Demo change {LABEL}"
    step = sum(isinstance(m, ModelResponse) for m in since)
    turn = sum(isinstance(m, ModelResponse) for m in messages)  # unique ids in the chat
    if step == 0:
        args = {"filePath": SCRIPT, "content": script_for(prompt)}
        return ToolCallPart("write", json.dumps(args), tool_call_id=f"demo_{turn}_write")
    if step == 1:
        return ToolCallPart("bash", json.dumps({"command": RUN}), tool_call_id=f"demo_{turn}_bash")
    return _summary(since)


def script_for(prompt: str) -> str:
    """``hello.py`` for a prompt: it greets, and counts and reverses the prompt."""
    quoted = prompt.strip()[:PROMPT_CHARS] or "(an empty prompt)"
    return (
        f"# Written by the demo model ({LABEL}) from your prompt.\n"
        f"prompt = {quoted!r}\n"
        'print("Hello from hello.py, written by the demo model!")\n'
        'print(f"Your prompt has {len(prompt.split())} words and {len(prompt)} characters.")\n'
        'print("Backwards:", prompt[::-1])\n'
    )


def _summary(since: list[ModelMessage]) -> str:
    ran = _return_of(since, "bash")
    if ran is None:
        return f"{LABEL} I wrote {SCRIPT}, but running it gave me no result."
    if isinstance(ran, RetryPromptPart) or getattr(ran, "outcome", "success") != "success":
        text = ran.model_response() if isinstance(ran, RetryPromptPart) else str(ran.content)
        return f"{LABEL} I wrote {SCRIPT} and ran `{RUN}`, which failed: {text.strip()}"
    out: Any = ran.content
    if not isinstance(out, dict):
        return f"{LABEL} I wrote {SCRIPT} and ran `{RUN}`: {out}"
    stdout = str(out.get("stdout", "")).strip()
    stderr = str(out.get("stderr", "")).strip()
    said = f"It printed:\n\n{stdout}" if stdout else "It printed nothing."
    if stderr:
        said += f"\n\nOn stderr:\n\n{stderr}"
    return (
        f"{LABEL} I wrote {SCRIPT} with the write tool and ran `{RUN}` with bash "
        f"(exit code {out.get('exitCode')}). {said}\n\nThis reply comes from the built-in demo "
        "model, not a language model: pick a real model to have your request carried out."
    )


def _last_prompt(messages: list[ModelMessage]) -> tuple[str, list[ModelMessage]]:
    """The last user prompt's text, and the messages after the request that holds it."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, ModelRequest):
            texts = [p.content for p in message.parts if isinstance(p, UserPromptPart)]
            if texts:
                text = " ".join(t if isinstance(t, str) else _text_of(t) for t in texts)
                return text, messages[i + 1 :]
    return "", messages


def _text_of(content: Any) -> str:
    return " ".join(item for item in content if isinstance(item, str))


def _return_of(messages: list[ModelMessage], tool: str) -> ToolReturnPart | RetryPromptPart | None:
    found: ToolReturnPart | RetryPromptPart | None = None
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, ToolReturnPart | RetryPromptPart) and part.tool_name == tool:
                    found = part
    return found


def _answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    step = _next(messages, info)
    return ModelResponse(parts=[step if isinstance(step, ToolCallPart) else TextPart(step)])


async def _stream(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    """The same answers, streamed as a model streams them: a tool call's arguments in
    pieces, text word by word."""
    step = _next(messages, info)
    if isinstance(step, ToolCallPart):
        args = step.args_as_json_str()
        third = max(1, len(args) // 3)
        pieces = [args[i : i + third] for i in range(0, len(args), third)]
        yield {0: DeltaToolCall(name=step.tool_name, tool_call_id=step.tool_call_id)}
        for piece in pieces:
            yield {0: DeltaToolCall(json_args=piece)}
        return
    words = step.split(" ")
    for i, word in enumerate(words):
        if i:
            await asyncio.sleep(WORD_SECONDS)
        yield word if i == len(words) - 1 else word + " "
