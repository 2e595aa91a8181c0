"""The prompt loop of ``agent-sessions chat``: pick the session and chat (the one used last,
unless told otherwise), show its history, wait for the sandbox, then send each line as a turn
and render its stream. Lines starting with ``/`` are commands (``commands``), never sent.

Ctrl-C during a turn stops the turn on the server (``POST /api/chat/{chatId}/stop``) rather than
only hanging up: the turn would otherwise keep running, and keep the chat locked, server-side.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console

from agent_sessions.client import (
    ApiError,
    Client,
    ConflictError,
    NotFoundError,
    StreamDropped,
    ToolInputAvailableChunk,
    TurnStream,
    UnauthorizedError,
)
from agent_sessions.terminal import commands, history, state
from agent_sessions.terminal.render import Renderer

SANDBOX_TIMEOUT = 300.0
POLL_SECONDS = 0.5


class ClientError(Exception):
    """Ends the command with a one-line message and an exit code (2: bad or missing key)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ChatOptions:
    url: str
    api_key: str | None
    session_id: str | None = None
    chat_id: str | None = None
    model: str | None = None
    new: bool = False


def run(options: ChatOptions, console: Console | None = None) -> int:
    """Run the client; returns the exit code. Errors become one line on stderr."""
    console = console or Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if not options.api_key:
            raise ClientError(
                "no API key: pass --api-key or set AGENT_SESSIONS_API_KEY "
                "(create one with `agent-sessions accounts create`)",
                2,
            )
        with Client(options.url, options.api_key) as client:
            Repl(client, options, options.api_key, console).main()
    except ClientError as err:
        errors.print(f"error: {err}", style="red", markup=False)
        return err.code
    return 0


def _describe(err: Exception, url: str) -> ClientError:
    if isinstance(err, UnauthorizedError):
        return ClientError(f"the server refused the API key: {err.message}", 2)
    if isinstance(err, ApiError):
        return ClientError(str(err))
    return ClientError(f"cannot reach {url}: {err}")


class Repl:
    def __init__(
        self, client: Client, options: ChatOptions, api_key: str, console: Console
    ) -> None:
        self.client = client
        self.api_key = api_key
        self.model = options.model
        client.on_resume = self.resuming  # say so when a dropped stream is resumed
        self.options = options
        self.console = console
        self.renderer = Renderer(console)
        self.session_id = ""
        self.chat_id = ""
        self.interactive = sys.stdin.isatty()

    def main(self) -> None:
        try:
            self._open()
        except (ApiError, httpx.TransportError) as err:
            raise _describe(err, self.options.url) from err
        if self.interactive:
            import readline  # noqa: F401  (line editing and history for input())

        self.console.print(
            "Type a message; /help lists commands. Ctrl-C stops a running turn, Ctrl-D quits.",
            style="dim",
        )
        while True:
            try:
                line = self._ask("> ")
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                self.console.print()
                continue
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/"):
                    commands.handle(self, text)
                else:
                    self._turn(text)
            except commands.Quit:
                return
            except KeyboardInterrupt:
                self.stop()
            except ClientError as err:
                self._error(str(err))
            except UnauthorizedError as err:
                raise _describe(err, self.options.url) from err
            except ApiError as err:
                self._error(err.message)
            except (httpx.TransportError, StreamDropped) as err:
                self._error(str(err) or type(err).__name__)

    # --- setup ---------------------------------------------------------------------------------

    def _open(self) -> None:
        """``--session``, else the session used last with this server and key (unless
        ``--new``, or it is gone or archived), else a new one."""
        options = self.options
        if options.session_id is not None:
            self.open_existing(options.session_id, options.chat_id)
            return
        last = None if options.new else state.last_used(options.url, self.api_key)
        if last is not None:
            try:
                session = self.client.get_session(last[0])
            except NotFoundError:
                session = None
            if session is not None and session.status != "archived":
                self.open_existing(session.id, last[1], remembered=True)
                return
        self.open_new()

    def open_new(self) -> None:
        created = self.client.create_session()
        self._enter(created.session.id, created.session.title, created.chat.id, [])

    def open_existing(
        self, session_id: str, chat_id: str | None, *, remembered: bool = False
    ) -> None:
        """Enter a session's chat (``chat_id``, else the session's first), history shown. A
        remembered chat that is gone falls back to the first."""
        session = self.client.get_session(session_id)
        chats = self.client.list_chats(session_id).chats
        if chat_id is not None and not any(c.id == chat_id for c in chats):
            if not remembered:
                raise ClientError(f"session {session_id} has no chat {chat_id}")
            chat_id = None
        if chat_id is None:
            if not chats:
                raise ClientError(f"session {session_id} has no chats")
            chat_id = chats[0].id
        detail = self.client.get_chat(session_id, chat_id)
        self._enter(session.id, session.title, chat_id, detail.messages)
        if detail.is_streaming:
            self.console.print("a turn is running in this chat; /stop stops it", style="yellow")

    def _enter(self, session_id: str, title: str, chat_id: str, messages: list[Any]) -> None:
        self.session_id, self.chat_id = session_id, chat_id
        self.console.print(f"session {session_id}  {title}", markup=False)
        self.console.print(f"chat {chat_id}", style="dim", markup=False)
        if messages:
            history.show(self.renderer, messages)
            self.console.rule("earlier conversation above", style="dim")
        state.remember(self.options.url, self.api_key, session_id, chat_id)
        self._wait_for_sandbox()

    def _wait_for_sandbox(self) -> None:
        """Poll the lifecycle until the sandbox is active. A hibernated one is fine too: the
        first turn restores it (and says so in its stream)."""
        deadline = time.monotonic() + SANDBOX_TIMEOUT
        shown = ""
        waiting = self.renderer.waiting  # a spinner on a terminal, one line per state if piped
        try:
            while True:
                sandbox = self.client.sandbox_state(self.session_id)
                state = sandbox.lifecycle_state or "provisioning"
                if state == "active":
                    break
                if state in ("hibernated", "hibernating"):
                    waiting.clear()
                    self.console.print(
                        "sandbox is hibernated; your first message restores it", style="dim"
                    )
                    return
                if state in ("failed", "archived"):
                    why = sandbox.lifecycle_error or state
                    raise ClientError(f"the session's sandbox is {state}: {why}")
                if state != shown:
                    shown = state
                    waiting.set(f"waiting for the sandbox ({state})")
                    if not waiting.enabled:
                        self.console.print(f"waiting for the sandbox ({state})…", style="dim")
                if time.monotonic() > deadline:
                    raise ClientError(f"the sandbox is still {state} after {SANDBOX_TIMEOUT:g} s")
                time.sleep(POLL_SECONDS)
        finally:
            waiting.clear()
        self.console.print("sandbox ready", style="dim")

    # --- turns ---------------------------------------------------------------------------------

    def _turn(self, text: str) -> None:
        try:
            self.renderer.waiting.set("thinking")
            chunks = self.client.send_message(self.session_id, self.chat_id, text, model=self.model)
        except ConflictError as err:
            self._error(err.message)
            if not self._confirm("Attach to the running turn? [Y/n] "):
                return
            live = self.client.resume_stream(self.chat_id, 0)
            if live is None:
                self.console.print("that turn has ended; send your message again", style="dim")
                return
            self.console.print("(your message was not sent)", style="dim")
            chunks = live
        self._render(chunks)

    def _render(self, chunks: TurnStream) -> None:
        """Show a turn's stream. At a question the response ends (ADR 14): the answer's own
        response carries the rest of the turn. Ctrl-C stops the turn and reads its stream to
        the end, so the screen shows what the server stores (the open calls cancelled); a
        second Ctrl-C only hangs up."""
        current: TurnStream | None = chunks
        stopping = False
        try:
            while current is not None:
                following, current = current, None
                try:
                    with following:  # hang up at once on Ctrl-C
                        for chunk in following:
                            self.renderer.feed(chunk)
                            if (
                                isinstance(chunk, ToolInputAvailableChunk)
                                and chunk.tool_name == "ask_user_question"
                            ):
                                current = self._answer(chunk, following.index)
                                break
                except KeyboardInterrupt:
                    if stopping:
                        return
                    stopping = True
                    self.stop()
                    current = self.client.resume_stream(self.chat_id, following.index)
            if stopping:  # calls the stream left open: what the stored message says of them
                self._show_stored_outcomes()
        finally:
            self.renderer.newline()

    def _show_stored_outcomes(self) -> None:
        if not self.renderer.open_calls:
            return
        messages = self.client.get_chat(self.session_id, self.chat_id).messages
        if messages and messages[-1].role == "assistant":
            history.settle(self.renderer, messages[-1])

    def _answer(self, call: ToolInputAvailableChunk, index: int) -> TurnStream:
        """The agent asked multiple-choice questions: ask them here, send the answers back;
        the rest of the turn (from the run's chunk ``index``) streams in the answer's response."""
        self.renderer.newline()
        answers: dict[str, str] = {}
        questions = (call.input if isinstance(call.input, dict) else {}).get("questions") or []
        try:
            for q in questions:
                options = [o.get("label", "") for o in q.get("options", [])]
                self.console.print(q.get("question", ""), style="bold", markup=False)
                for i, label in enumerate(options, start=1):
                    self.console.print(f"  {i}. {label}", markup=False)
                reply = self._ask("choose a number, or type an answer: ").strip()
                if reply.isdigit() and 1 <= int(reply) <= len(options):
                    reply = options[int(reply) - 1]
                answers[q.get("question", "")] = reply
        except (EOFError, KeyboardInterrupt):
            output: dict[str, object] = {"declined": True}
        else:
            output = {"answers": answers}
        return self.client.answer_question(
            self.session_id, self.chat_id, call, output, start_index=index
        )

    def stop(self) -> None:
        """Stop the chat's turn on the server; what it showed stays on screen, and the server
        stores the partial message."""
        self.renderer.newline()
        self.console.print("stopping…", style="yellow")
        stopped = self.client.stop_turn(self.chat_id).stopped
        self.console.print("stopped" if stopped else "the turn had already ended", style="dim")

    def resuming(self, attempt: int, reason: str) -> None:
        self.renderer.newline()
        self.console.print(f"connection lost ({reason}); resuming (try {attempt})…", style="dim")

    def _ask(self, prompt: str) -> str:
        line = input(prompt)
        if not self.interactive:  # piped input: echo it, so the output reads as a transcript
            self.console.print(line, markup=False)
        return line

    def _confirm(self, question: str) -> bool:
        try:
            answer = self._ask(question)
        except (EOFError, KeyboardInterrupt):
            self.console.print()
            return False
        return answer.strip().lower() in ("", "y", "yes")

    def _error(self, message: str) -> None:
        self.renderer.newline()
        self.console.print(f"error: {message}", style="bold red", markup=False)
