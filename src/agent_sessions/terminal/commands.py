"""Slash commands: handled here, never sent to the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.syntax import Syntax

if TYPE_CHECKING:
    from agent_sessions.terminal.repl import Repl

HELP = [
    ("/help", "this list"),
    ("/new", "start a new session (and its sandbox)"),
    ("/sessions", "list your sessions"),
    ("/switch ID", "continue another session (its history is shown)"),
    ("/diff", "what the agent changed in the workspace"),
    ("/stop", "stop the chat's running turn (Ctrl-C does too, during a turn)"),
    ("/model [ID]", "show the chat's model, or set it"),
    ("/quit", "quit (also /exit, Ctrl-D)"),
]


class Quit(Exception):
    """Raised by /quit to leave the prompt loop."""


def handle(repl: Repl, line: str) -> None:
    """Run one slash command (``line`` starts with ``/``)."""
    name, _, arg = line.partition(" ")
    command = COMMANDS.get(name)
    if command is None:
        repl.console.print(f"unknown command {name}; /help lists them", style="yellow")
        return
    command(repl, arg.strip())


def _help(repl: Repl, arg: str) -> None:
    for usage, what in HELP:
        repl.console.print(f"  {usage:<12} {what}", markup=False)


def _quit(repl: Repl, arg: str) -> None:
    raise Quit


def _new(repl: Repl, arg: str) -> None:
    repl.open_new()


def _sessions(repl: Repl, arg: str) -> None:
    sessions = repl.client.list_sessions(limit=20).sessions
    if not sessions:
        repl.console.print("no sessions", style="dim")
    for s in sessions:
        mark = "*" if s.id == repl.session_id else " "
        state = s.lifecycle_state or "-"
        repl.console.print(f"{mark} {s.id}  {state:<12} {s.title}", markup=False)


def _switch(repl: Repl, arg: str) -> None:
    if not arg:
        repl.console.print("usage: /switch SESSION_ID (see /sessions)", style="yellow")
        return
    repl.open_existing(arg, None)


def _diff(repl: Repl, arg: str) -> None:
    diff = repl.client.diff(repl.session_id)
    total = diff.summary
    repl.console.print(
        f"{total.total_files} files changed, +{total.total_additions} -{total.total_deletions}",
        style="bold",
    )
    for f in diff.files:
        repl.console.print(f"  {f.status:<9} {f.path}  +{f.additions} -{f.deletions}", markup=False)
    patch = "".join(f.diff or "" for f in diff.files)
    if not patch:
        return
    if repl.console.is_terminal:
        repl.console.print(Syntax(patch, "diff", theme="ansi_dark"))
    else:
        repl.console.print(patch.rstrip("\n"), markup=False, highlight=False)


def _stop(repl: Repl, arg: str) -> None:
    repl.stop()


def _model(repl: Repl, arg: str) -> None:
    if arg:
        repl.client.update_chat(repl.session_id, repl.chat_id, model_id=arg)
        repl.model = arg
        repl.console.print(f"model set to {arg}", markup=False)
        return
    listing = repl.client.list_chats(repl.session_id)
    chat = next((c for c in listing.chats if c.id == repl.chat_id), None)
    if repl.model:
        current = repl.model
    elif chat is not None and chat.model_id:
        current = chat.model_id
    else:
        current = f"{listing.default_model_id} (the default)"
    repl.console.print(f"model: {current}", markup=False)


COMMANDS: dict[str, Callable[[Repl, str], None]] = {
    "/help": _help,
    "/new": _new,
    "/sessions": _sessions,
    "/switch": _switch,
    "/diff": _diff,
    "/stop": _stop,
    "/model": _model,
    "/quit": _quit,
    "/exit": _quit,
}
