"""One log format for the service and the libraries it runs (README, Operating).

Every line carries the session, chat and run ids known where it was written: the HTTP layer
binds those of the request's path (``api/deps.py``), a turn's workflow binds its own
(``agent/turn.py``), in context variables that each request's and each workflow's task has
to itself. They cost nothing until a line is written. ``text`` appends them as ``key=value``;
``json`` writes one object a line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)
chat_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("chat_id", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
IDS = (("session_id", session_id), ("chat_id", chat_id), ("run_id", run_id))

QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
"""HTTP clients that log every request at INFO: one line per model request (each agent step)
is noise, and formatting and writing it was 3% of a turn's CPU (py-spy, bench/agent.py)."""
LIBRARY_LOGGERS = ("dbos", "uvicorn", "uvicorn.error", "uvicorn.access")
"""Loggers that come with a handler and format of their own: theirs are replaced by ours."""
HANDLER_NAME = "agent-sessions"


def bind(*, session: str | None = None, chat: str | None = None, run: str | None = None) -> None:
    """Set the ids of the current task (a request's, a workflow's); ``None`` leaves one as it
    is. Bound in a task, they stay with it and the tasks it starts."""
    if session is not None:
        session_id.set(session)
    if chat is not None:
        chat_id.set(chat)
    if run is not None:
        run_id.set(run)


class ContextIds(logging.Filter):
    """Puts the bound ids on each record the handler writes (a record may name its own, with
    ``extra={"session_id": …}``, when it is about another one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in IDS:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={value}" for name, _ in IDS if (value := getattr(record, name, None))
        )
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # ids on the first line, before a traceback
        return f"{first} {ids}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, _ in IDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Route every log line of the process through one handler on stderr, in ``fmt``, at
    ``level`` (the noisy HTTP clients stay at WARNING unless ``level`` is DEBUG).

    Libraries that install their own handler (DBOS; uvicorn, unless told not to) are given
    ours instead, so no line leaves in another format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextIds())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        # propagating to the root's handler; DBOS adds a console handler only to a logger
        # that has none, so it is given ours (and stops propagating, not to write twice)
        if name == "dbos":
            logger.addHandler(handler)
            logger.propagate = False
        else:
            logger.propagate = True
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
