"""``/api/usage`` (the caller's account by day, model or session) and a chat's usage."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from agent_sessions.agent.pricing import from_nano
from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.exceptions import InvalidInput
from agent_sessions.store import chats as chat_store
from agent_sessions.store import sessions
from agent_sessions.store import usage as store
from agent_sessions.store.turns import RunView

router = APIRouter(prefix="/api", tags=["usage"])

DEFAULT_DAYS = 30
MAX_DAYS = 366
"""The longest range one report covers (a year of days, one row a day at most)."""


def _instant(name: str, value: str | None, *, end: bool) -> datetime | None:
    """An ISO date (the start of that UTC day; for ``to``, the start of the next: the day is
    included) or date-time (without an offset: UTC)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"Invalid {name}: expected an ISO date (2026-01-31) or date-time (2026-01-31T12:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """``[from, to)``; by default the last 30 UTC days, today included."""
    try:
        return _bounds(start, end)
    except OverflowError:  # a default from before year 1, a bound that is a year 9999 date
        raise InvalidInput("Invalid range: out of the representable dates") from None


def _bounds(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    to = _instant("to", end, end=True)
    since = _instant("from", start, end=False)
    if to is None:
        to = datetime.now(UTC)
    if since is None:
        last_day = datetime.combine(to.date(), time(), UTC)
        if last_day == to:  # to is a midnight: the day before it is the last one
            last_day -= timedelta(days=1)
        since = last_day - timedelta(days=DEFAULT_DAYS - 1)
    if since >= to:
        raise InvalidInput("Invalid range: from must be before to")
    if to - since > timedelta(days=MAX_DAYS):
        raise InvalidInput(f"Invalid range: at most {MAX_DAYS} days")
    return since, to


def subagent_out(
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_write: int,
    tool_calls: int,
    cost_nanousd: int | None,
) -> schemas.SubagentUsage:
    return schemas.SubagentUsage(
        input_tokens=input_tokens, output_tokens=output_tokens, cached_input_tokens=cache_read,
        cache_write_tokens=cache_write, tool_calls=tool_calls, cost_usd=from_nano(cost_nanousd),
    )  # fmt: skip


def compaction_out(
    input_tokens: int, output_tokens: int, cost_nanousd: int | None
) -> schemas.CompactionUsage:
    return schemas.CompactionUsage(
        input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=from_nano(cost_nanousd)
    )


def figures_out(f: store.Figures) -> dict[str, Any]:
    """The fields of ``UsageFigures`` (a row adds its key)."""
    return {
        "runs": f.runs, "input_tokens": f.input_tokens, "output_tokens": f.output_tokens,
        "cached_input_tokens": f.cache_read_tokens, "cache_write_tokens": f.cache_write_tokens,
        "tool_calls": f.tool_calls, "duration_ms": f.duration_ms,
        "cost_usd": from_nano(f.cost_nanousd), "unpriced_runs": f.unpriced_runs,
        "subagent": subagent_out(
            f.subagent_input_tokens, f.subagent_output_tokens, f.subagent_cache_read_tokens,
            f.subagent_cache_write_tokens, f.subagent_tool_calls, f.subagent_cost_nanousd,
        ),
        "compaction": compaction_out(
            f.compaction_input_tokens, f.compaction_output_tokens, f.compaction_cost_nanousd
        ),
    }  # fmt: skip


def run_usage_out(run: RunView) -> schemas.RunUsage:
    """A run's usage as ``GET /api/chat/runs/{runId}`` shows it."""
    return schemas.RunUsage(
        input_tokens=run.input_tokens, output_tokens=run.output_tokens,
        cached_input_tokens=run.cache_read_tokens, cache_write_tokens=run.cache_write_tokens,
        cost_usd=from_nano(run.cost_nanousd),
        subagent=subagent_out(
            run.subagent_input_tokens, run.subagent_output_tokens,
            run.subagent_cache_read_tokens, run.subagent_cache_write_tokens,
            run.subagent_tool_calls, run.subagent_cost_nanousd,
        ),
        compaction=compaction_out(
            run.compaction_input_tokens, run.compaction_output_tokens,
            run.compaction_cost_nanousd,
        ),
    )  # fmt: skip


_ISO = "An ISO date (a whole UTC day) or date-time (UTC unless it carries an offset)"


@router.get(
    "/usage",
    response_model=schemas.UsageReport,
    summary="The caller's usage and cost of finished runs, by UTC day, model or session",
    responses=errors(400, 401),
)
async def get_usage(
    caller: CallerDep,
    start: Annotated[
        str | None, Query(alias="from", description=f"{_ISO}; default: 29 days before today")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description=f"{_ISO}, excluded (a date: included)")
    ] = None,
    groupBy: Literal["day", "model", "session"] = "day",
) -> schemas.UsageReport:
    services, account_id = caller
    since, to = _range(start, end)
    rows, total = await services.db.read_call(
        lambda db: store.report(db, account_id, since, to, groupBy)
    )
    return schemas.UsageReport.model_validate(
        {
            "from": since,
            "to": to,
            "group_by": groupBy,
            "rows": [{"key": key, **figures_out(f)} for key, f in rows],
            "total": figures_out(total),
        }
    )


@router.get(
    "/sessions/{sessionId}/usage",
    response_model=schemas.SessionUsage,
    summary="Usage and cost of the session's finished runs, in all and per chat",
    responses=errors(401, 403, 404),
)
async def get_session_usage(caller: CallerDep, sessionId: str) -> schemas.SessionUsage:
    services, account_id = caller

    def read(db: Session) -> schemas.SessionUsage:
        session = sessions.read_owned(db, sessionId, account_id)
        rows, total = store.session_figures(db, session.account_id, session.id)
        chats = [{"chat_id": chat_id, "usage": figures_out(f)} for chat_id, f in rows]
        return schemas.SessionUsage.model_validate(
            {"session_id": session.id, "usage": figures_out(total), "chats": chats}
        )

    return await services.db.read_call(read)


@router.get(
    "/sessions/{sessionId}/chats/{chatId}/usage",
    response_model=schemas.ChatUsage,
    summary="Usage and cost of the chat's finished runs",
    responses=errors(401, 403, 404),
)
async def get_chat_usage(caller: CallerDep, sessionId: str, chatId: str) -> schemas.ChatUsage:
    services, account_id = caller

    def read(db: Session) -> schemas.ChatUsage:
        sessions.read_owned(db, sessionId, account_id)
        chat = chat_store.get_chat(db, account_id=account_id, session_id=sessionId, chat_id=chatId)
        figures = figures_out(store.chat_figures(db, chat.key))
        return schemas.ChatUsage.model_validate({"chat_id": chat.id, "usage": figures})

    return await services.db.read_call(read)
