"""Token, tool-call, time and cost totals of an account's finished runs, summed in SQL.

Every figure of a run is stored with it when it finishes (``chat_runs``, cost included:
``agent.pricing``), so a report is one ``GROUP BY`` over the account's runs in a time range
(``ix_chat_runs_account_created``). The day of a run is the UTC day of its ``created_at``; the
one construct that differs between the databases is that day (:class:`utc_day`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from agent_sessions.store.models import ChatKey, ChatRun
from agent_sessions.store.turns import TERMINAL

GroupBy = Literal["day", "model", "session"]


class utc_day(FunctionElement[str]):
    """``YYYY-MM-DD`` of a UTC timestamp column, as text on both databases."""

    type = String()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite holds the UTC time as ISO text (``models.UTCDateTime``): its date() reads it.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # timestamptz → the UTC wall time first, whatever the connection's time zone.
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@dataclass(frozen=True)
class Figures:
    """Sums over some runs. Each figure includes the subagents' and the summaries' (ADR 15);
    ``subagent_*`` and ``compaction_*`` are those parts.
    A cost is None when no run summed had a price; ``unpriced_runs`` counts those without."""

    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    tool_calls: int
    duration_ms: int
    cost_nanousd: int | None
    unpriced_runs: int
    subagent_input_tokens: int
    subagent_output_tokens: int
    subagent_cache_read_tokens: int
    subagent_cache_write_tokens: int
    subagent_tool_calls: int
    subagent_cost_nanousd: int | None
    compaction_input_tokens: int
    compaction_output_tokens: int
    compaction_cost_nanousd: int | None


_SUMMED = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "tool_calls",
    "duration_ms", "subagent_input_tokens", "subagent_output_tokens",
    "subagent_cache_read_tokens", "subagent_cache_write_tokens", "subagent_tool_calls",
    "compaction_input_tokens", "compaction_output_tokens",
)  # fmt: skip


def _figure_columns() -> list[ColumnElement[Any]]:
    columns: list[ColumnElement[Any]] = [func.count().label("runs")]
    columns += [func.coalesce(func.sum(getattr(ChatRun, name)), 0).label(name) for name in _SUMMED]
    columns += [
        func.sum(ChatRun.cost_nanousd).label("cost_nanousd"),  # NULL when every one is NULL
        func.count(ChatRun.cost_nanousd).label("priced_runs"),
        func.sum(ChatRun.subagent_cost_nanousd).label("subagent_cost_nanousd"),
        func.sum(ChatRun.compaction_cost_nanousd).label("compaction_cost_nanousd"),
    ]
    return columns


def _figures(row: Any) -> Figures:
    def whole(value: Any) -> int | None:
        return None if value is None else int(value)  # PostgreSQL sums BIGINT as NUMERIC

    return Figures(
        runs=int(row.runs),
        cost_nanousd=whole(row.cost_nanousd),
        unpriced_runs=int(row.runs) - int(row.priced_runs),
        subagent_cost_nanousd=whole(row.subagent_cost_nanousd),
        compaction_cost_nanousd=whole(row.compaction_cost_nanousd),
        **{name: int(getattr(row, name)) for name in _SUMMED},
    )


def _finished() -> ColumnElement[bool]:
    return ChatRun.status.in_(TERMINAL)


def _key(group_by: GroupBy) -> ColumnElement[str] | InstrumentedAttribute[str]:
    if group_by == "day":
        return utc_day(ChatRun.created_at)
    if group_by == "model":
        return ChatRun.model_id
    return ChatRun.session_id


def report(
    db: Session, account_id: str, start: datetime, end: datetime, group_by: GroupBy
) -> tuple[list[tuple[str, Figures]], Figures]:
    """The account's finished runs created in ``[start, end)``: ``(key, figures)`` per day,
    model or session (in key order), and the figures of them all."""
    scope = (
        ChatRun.account_id == account_id,
        ChatRun.created_at >= start,
        ChatRun.created_at < end,
        _finished(),
    )
    key = _key(group_by).label("key")
    grouped = select(key, *_figure_columns()).where(*scope).group_by(key).order_by(key)
    rows = [(str(row.key), _figures(row)) for row in db.execute(grouped)]
    total = _figures(db.execute(select(*_figure_columns()).where(*scope)).one())
    return rows, total


def session_figures(
    db: Session, account_id: str, session_id: str
) -> tuple[list[tuple[str, Figures]], Figures]:
    """The figures of a session's finished runs: ``(chat id, figures)`` per chat that has one,
    in chat id order, and those of them all."""
    scope = (ChatRun.account_id == account_id, ChatRun.session_id == session_id, _finished())
    grouped = (
        select(ChatRun.chat_id, *_figure_columns())
        .where(*scope)
        .group_by(ChatRun.chat_id)
        .order_by(ChatRun.chat_id)
    )
    rows = [(str(row.chat_id), _figures(row)) for row in db.execute(grouped)]
    return rows, _figures(db.execute(select(*_figure_columns()).where(*scope)).one())


def chat_figures(db: Session, chat: ChatKey) -> Figures:
    """The figures of every finished run of one chat."""
    stmt = select(*_figure_columns()).where(
        ChatRun.account_id == chat.account_id, ChatRun.chat_id == chat.chat_id, _finished()
    )
    return _figures(db.execute(stmt).one())
