"""A turn's chunks → terminal output, one chunk at a time as they arrive.

On a terminal the assistant's text is rendered as markdown (code blocks highlighted) while it
streams, and a spinner with the elapsed time fills the silences; piped, text is printed inline
as plain text. Tool calls get a one-line header when their input is complete and a short
summary of the result, so a long command output never floods the screen (the full result stays
in the stored message); while a command runs, the last lines of its output show under the
spinner. Stored messages (a chat's history) go through the same methods.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from agent_sessions.client import (
    AbortChunk,
    Chunk,
    DataChunk,
    ErrorChunk,
    FinishChunk,
    MessageMetadataChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    StartChunk,
    StartStepChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolInputErrorChunk,
    ToolInputStartChunk,
    ToolOutputAvailableChunk,
    ToolOutputDeniedChunk,
    ToolOutputErrorChunk,
)
from agent_sessions.terminal.spinner import Waiting

HEADER_WIDTH = 120
ARG_WIDTH = 60
PREVIEW_CHARS = 300
HEAD_LINES = 4
TAIL_LINES = 4


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


KEY_ARGUMENTS = {
    "bash": "command", "read": "filePath", "write": "filePath", "edit": "filePath",
    "grep": "pattern", "glob": "pattern", "skill": "skill",
}  # fmt: skip
"""The one argument that says what a call of the service's own tools does (a write's content,
an edit's strings would only flood the line)."""


def tool_header(name: str, args: Any) -> str:
    """``bash(command="ls -la")``: the tool's key argument (others': each argument) as JSON,
    clipped so the header stays one line."""
    key = KEY_ARGUMENTS.get(name)
    if isinstance(args, dict) and key in args:
        args = {key: args[key]}
    if isinstance(args, dict):
        inner = ", ".join(
            f"{k}={_clip(json.dumps(v, ensure_ascii=False), ARG_WIDTH)}" for k, v in args.items()
        )
    elif args is None:
        inner = ""
    else:
        inner = _clip(json.dumps(args, ensure_ascii=False), ARG_WIDTH)
    return _clip(f"{name}({inner})", HEADER_WIDTH)


def head_tail(text: str, head: int = HEAD_LINES, tail: int = TAIL_LINES) -> list[str]:
    """The first and last lines of ``text``, with a marker for what lies between."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= head + tail + 1:
        return lines
    return [*lines[:head], f"… {len(lines) - head - tail} more lines", *lines[-tail:]]


class Renderer:
    """Feeds on chunks and writes them to a rich console (colours only on a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._at_line_start = True
        self._last_kind = ""
        self._tools: dict[str, str] = {}
        self.open_calls: dict[str, str] = {}
        """Calls shown without their outcome yet (id → tool name)."""
        self._usage: dict[str, Any] | None = None
        self.waiting = Waiting(console)
        self._markdown: Live | None = None
        self._text = ""

    # --- output helpers ------------------------------------------------------------------------

    def _inline(self, text: str, style: str = "") -> None:
        if not text:
            return
        self._settle()
        self.console.print(Text(text, style=style), end="")
        self._at_line_start = text.endswith("\n")

    def _line(self, text: str, style: str = "") -> None:
        """A whole line of its own, starting a new one if inline text is pending."""
        self.newline()
        self.console.print(Text(text, style=style))
        self._at_line_start = True

    def _settle(self) -> None:
        """Before printing: the spinner cleared, streamed markdown left as last rendered."""
        self.waiting.clear()
        if self._markdown is not None:
            self._markdown.stop()
            self._markdown = None
            self._at_line_start = True

    def _markdown_delta(self, delta: str) -> None:
        self._text += delta
        if self._markdown is None:
            self._settle()
            self.newline()
            self._markdown = Live(
                console=self.console, refresh_per_second=8, vertical_overflow="visible"
            )
            self._markdown.start()
        self._markdown.update(Markdown(self._text))

    def text(self, text: str) -> None:
        """A whole text part (a stored message's): markdown on a terminal."""
        if self.console.is_terminal:
            self._markdown_delta(text)
            self._settle()
            self._text = ""
        else:
            self.newline()
            self._inline(text)

    def reasoning(self, text: str) -> None:
        self.newline()
        self._inline(text, "dim italic")

    def user(self, text: str) -> None:
        """A user message of the history, as it was typed at the prompt."""
        self._line(f"> {text}", "bold")

    def newline(self) -> None:
        self._settle()
        if not self._at_line_start:
            self.console.print()
            self._at_line_start = True

    # --- chunks --------------------------------------------------------------------------------

    def feed(self, chunk: Chunk) -> None:
        self._show(chunk)
        self.waiting.set(self._waiting_for(chunk))
        if isinstance(chunk, ToolOutputAvailableChunk) and chunk.preliminary:
            output = chunk.output if isinstance(chunk.output, dict) else {}
            self.waiting.output(f"{output.get('stdout') or ''}{output.get('stderr') or ''}")

    def _waiting_for(self, chunk: Chunk) -> str | None:
        """What the spinner says after ``chunk`` (None: output is flowing, or the turn ended)."""
        match chunk:
            case ToolInputAvailableChunk() if chunk.tool_name != "ask_user_question":
                return f"running {chunk.tool_name}"
            case ToolOutputAvailableChunk(preliminary=True):  # still running
                return f"running {self._tools.get(chunk.tool_call_id, 'tool')}"
            case (
                StartChunk() | StartStepChunk() | ToolInputStartChunk() | TextEndChunk()
                | ReasoningEndChunk() | ToolOutputAvailableChunk() | ToolOutputErrorChunk()
            ):  # fmt: skip
                return "thinking"
            case DataChunk(name="sandbox") if isinstance(chunk.data, dict):
                return "restoring the sandbox" if chunk.data.get("state") == "restoring" else None
        return None

    def _show(self, chunk: Chunk) -> None:
        match chunk:
            case StartChunk():
                self._usage = None
                self.open_calls.clear()
            case TextStartChunk() | ReasoningStartChunk():
                kind = chunk.type.split("-")[0]
                if self._last_kind and self._last_kind != kind:
                    self.newline()
                self._last_kind = kind
            case TextDeltaChunk() if self.console.is_terminal:
                self._markdown_delta(chunk.delta)
            case TextDeltaChunk():
                self._inline(chunk.delta)
            case TextEndChunk():
                self._settle()
                self._text = ""
            case ReasoningDeltaChunk():
                self._inline(chunk.delta, "dim italic")
            case ToolInputStartChunk():
                self._tools[chunk.tool_call_id] = chunk.tool_name
            case ToolInputAvailableChunk() | ToolInputErrorChunk():
                name = chunk.tool_name or self._tools.get(chunk.tool_call_id, "tool")
                self._tools[chunk.tool_call_id] = name
                if isinstance(chunk, ToolInputAvailableChunk):  # open before it is seen
                    self.open_calls[chunk.tool_call_id] = name
                self.tool_call(name, chunk.input)
                if isinstance(chunk, ToolInputErrorChunk):
                    self.tool_error(chunk.error_text)
            case ToolOutputAvailableChunk(preliminary=True):
                pass  # shown under the spinner (feed)
            case ToolOutputAvailableChunk():
                self.open_calls.pop(chunk.tool_call_id, None)
                self.tool_output(self._tools.get(chunk.tool_call_id, ""), chunk.output)
            case ToolOutputErrorChunk() | ToolOutputDeniedChunk():
                self.open_calls.pop(chunk.tool_call_id, None)
                self.tool_error(getattr(chunk, "error_text", "denied"))
            case DataChunk(name="sandbox"):
                self._sandbox(chunk.data if isinstance(chunk.data, dict) else {})
            case ErrorChunk():
                self._line(f"error: {chunk.error_text}", "bold red")
                self._last_kind = "error"
            case AbortChunk():
                self._line("(turn aborted)", "dim")
            case MessageMetadataChunk() | FinishChunk():
                metadata = chunk.message_metadata
                if isinstance(metadata, dict) and isinstance(metadata.get("usage"), dict):
                    self._usage = metadata["usage"]
                if isinstance(chunk, FinishChunk):
                    self._footer()

    def tool_call(self, name: str, args: Any) -> None:
        self.newline()
        self.console.print(Text("⏺ ", style="green"), end="")
        self.console.print(Text(tool_header(name, args), style="bold"))
        self._last_kind = "tool"

    def tool_error(self, error: str) -> None:
        """The error's first line, and the first and last of the rest (a stopped command's
        error holds the output it had shown)."""
        first, _, rest = error.partition("\n")
        self._result_lines([f"error: {first}"], "red")
        self._result_lines(head_tail(rest.strip("\n")), "red", first=False)

    def tool_output(self, name: str, output: Any) -> None:
        if name == "bash" and isinstance(output, dict) and "exitCode" in output:
            code = output.get("exitCode")
            status = f"exit {code}"
            if output.get("timedOut"):
                status += " (timed out)"
            if output.get("commandId"):
                status += f" (detached: {output['commandId']})"
            self._result_lines([status], "" if code == 0 else "yellow")
            self._result_lines(head_tail(str(output.get("stdout") or "")), "", first=False)
            self._result_lines(head_tail(str(output.get("stderr") or "")), "red", first=False)
            return
        if isinstance(output, str):
            preview = head_tail(_clip(output, PREVIEW_CHARS), 3, 2)
        else:
            preview = [_clip(json.dumps(output, ensure_ascii=False), PREVIEW_CHARS)]
        self._result_lines(preview or ["(no output)"], "dim")

    def _result_lines(self, lines: list[str], style: str, *, first: bool = True) -> None:
        for i, line in enumerate(lines):
            prefix = "  ⎿  " if first and i == 0 else "     "
            self._line(prefix + line, style)

    def _sandbox(self, data: dict[str, Any]) -> None:
        state = data.get("state")
        if state == "restoring":
            self._line("restoring sandbox…", "cyan")
        elif state == "active":
            self._line("sandbox ready", "dim")
        elif state == "failed":
            self._line(f"sandbox failed: {data.get('error') or 'unknown error'}", "bold red")
        else:
            self._line(f"sandbox {state}", "dim")

    def _footer(self) -> None:
        self.newline()
        usage = self._usage
        if usage:
            self._line(
                f"— {usage.get('inputTokens', '?')} input · "
                f"{usage.get('outputTokens', '?')} output tokens",
                "dim",
            )
        self._last_kind = ""
