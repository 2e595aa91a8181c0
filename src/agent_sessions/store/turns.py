"""Agent turns in the database: the run record, the chat's ``activeStreamId`` lock, messages.

``activeStreamId`` is claimed and released by compare-and-set (``UPDATE … WHERE
active_stream_id IS NULL`` / ``= :run``), so two turns can never both own a chat and a turn
never releases a lock that is no longer its own. Chats are addressed by their ``ChatKey`` (the
account and the client's chat id) and messages within their chat (ADR 9).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from agent_sessions.store.models import Chat, ChatKey, ChatMessage, ChatRun, SessionRow, utcnow
from agent_sessions.store.reads import Query, Reader, first

LIVE = ("queued", "running")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunView:
    id: str
    chat_id: str
    session_id: str
    account_id: str
    model_id: str
    assistant_message_id: str
    status: str
    stop_requested: bool
    headless: bool
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    tool_calls: int
    steps: int
    subagent_input_tokens: int
    subagent_output_tokens: int
    subagent_cache_read_tokens: int
    subagent_cache_write_tokens: int
    subagent_tool_calls: int
    cost_nanousd: int | None
    subagent_cost_nanousd: int | None
    compaction_input_tokens: int
    compaction_output_tokens: int
    compaction_cost_nanousd: int | None
    finish_reason: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ChatRun) -> RunView:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})

    @property
    def chat_key(self) -> ChatKey:
        return ChatKey(self.account_id, self.chat_id)

    @property
    def duration_ms(self) -> int | None:
        return duration_ms(self.started_at, self.finished_at)


def duration_ms(started_at: datetime | None, finished_at: datetime | None) -> int | None:
    if started_at is None or finished_at is None:
        return None
    return round((finished_at - started_at) / timedelta(milliseconds=1))


def _is(chat: ChatKey) -> Any:
    return (Chat.account_id == chat.account_id) & (Chat.id == chat.chat_id)


def claim_chat(db: Session, chat: ChatKey, run_id: str) -> bool:
    """Take the chat's stream lock for ``run_id``; False if another turn holds it."""
    result = db.execute(
        update(Chat)
        .where(_is(chat), Chat.active_stream_id.is_(None))
        .values(active_stream_id=run_id)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def release_chat(db: Session, chat: ChatKey, run_id: str, *, replied: bool) -> None:
    """Give the lock back if ``run_id`` still holds it; note the reply time when there was one."""
    values: dict[str, Any] = {"active_stream_id": None}
    if replied:
        now = utcnow()
        values.update(last_assistant_message_at=now, updated_at=now)
    db.execute(update(Chat).where(_is(chat), Chat.active_stream_id == run_id).values(**values))


def create_run(db: Session, **fields: Any) -> ChatRun:
    defaults: dict[str, Any] = {
        "status": "queued", "stop_requested": False, "headless": False, "attempts": 0,
        "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "tool_calls": 0, "steps": 0, "subagent_input_tokens": 0, "subagent_output_tokens": 0,
        "subagent_cache_read_tokens": 0, "subagent_cache_write_tokens": 0,
        "subagent_tool_calls": 0, "compaction_input_tokens": 0, "compaction_output_tokens": 0,
        "created_at": utcnow(),
    }  # fmt: skip
    run = ChatRun(**{**defaults, **fields})
    db.add(run)
    return run


def get_run(db: Session, run_id: str) -> RunView | None:
    row = db.get(ChatRun, run_id)
    return RunView.of(row) if row is not None else None


def reply_text(message: dict[str, Any] | None) -> str | None:
    """An assistant message's text parts, joined by blank lines (one part per model step that
    spoke); None before the run stored a message."""
    if message is None:
        return None
    parts = message.get("parts") or []
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    return "\n\n".join(t for t in texts if isinstance(t, str) and t)


def run_reply(db: Session, run: RunView) -> str | None:
    """The text of the run's assistant message (its final reply once the run has ended)."""
    return reply_text(message_of(db, run.chat_key, run.assistant_message_id))


def list_runs(
    db: Session, *, account_id: str, status: str | None, limit: int, offset: int
) -> tuple[list[tuple[RunView, str | None]], bool]:
    """The account's runs, newest first, each with its reply text, and whether more follow."""
    stmt = (
        select(ChatRun, ChatMessage.parts)
        .outerjoin(
            ChatMessage,
            (ChatMessage.account_id == ChatRun.account_id)
            & (ChatMessage.chat_id == ChatRun.chat_id)
            & (ChatMessage.id == ChatRun.assistant_message_id),
        )
        .where(ChatRun.account_id == account_id)
        .order_by(ChatRun.created_at.desc(), ChatRun.id.desc())
        .offset(offset)
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(ChatRun.status == status)
    rows = db.execute(stmt).all()
    runs = [(RunView.of(run), reply_text(parts)) for run, parts in rows[:limit]]
    return runs, len(rows) > limit


def live_run(db: Session, chat: ChatKey) -> RunView | None:
    """The run holding the chat's stream lock, if any."""
    stmt = select(ChatRun).join(Chat, Chat.active_stream_id == ChatRun.id).where(_is(chat))
    row = db.scalars(stmt).first()
    return RunView.of(row) if row is not None else None


def live_reply(db: Session, chat: Chat) -> dict[str, Any] | None:
    """The assistant message of the chat's live turn, as far as it is stored (what it waits
    for shows there: approvals and questions)."""
    if chat.active_stream_id is None:
        return None
    run = db.get(ChatRun, chat.active_stream_id)
    if run is None:
        return None
    return message_of(db, chat.key, run.assistant_message_id)


def unfinished_runs(
    db: Session, executor_id: str, *, unrecorded: bool = True
) -> list[tuple[str, str]]:
    """``(run id, account id)`` of every queued or running run ``executor_id`` accepted (and,
    with ``unrecorded``, those accepted before processes were recorded), oldest first: another
    live process's waiting turns are its own."""
    accepted = ChatRun.executor_id == executor_id
    if unrecorded:
        accepted = accepted | ChatRun.executor_id.is_(None)
    stmt = (
        select(ChatRun.id, ChatRun.account_id)
        .where(ChatRun.status.in_(LIVE), accepted)
        .order_by(ChatRun.created_at)
    )
    return [(run_id, account_id) for run_id, account_id in db.execute(stmt)]


def mark_running(db: Session, run_id: str) -> RunView | None:
    row = db.get(ChatRun, run_id)
    if row is None:
        return None
    if row.status == "queued":
        row.status = "running"
        row.started_at = utcnow()
    return RunView.of(row)


def count_attempt(db: Session, run_id: str) -> tuple[int, bool]:
    """Count one more execution of the run's workflow; returns the new count and whether this
    is the run's very first execution (counted first, and the run never marked running: a run
    that an older version started had been marked running before it was counted)."""
    db.execute(update(ChatRun).where(ChatRun.id == run_id).values(attempts=ChatRun.attempts + 1))
    row = db.execute(select(ChatRun.attempts, ChatRun.status).where(ChatRun.id == run_id)).first()
    if row is None:
        return 0, False
    return int(row.attempts), row.attempts == 1 and row.status == "queued"


def request_stop(db: Session, run_id: str) -> bool:
    """Flag a live run for stopping; False if it has already ended."""
    result = db.execute(
        update(ChatRun)
        .where(ChatRun.id == run_id, ChatRun.status.in_(LIVE))
        .values(stop_requested=True)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


_STATUS = Query(select(ChatRun.status).where(ChatRun.id == bindparam("id")))


def run_status(db: Reader, run_id: str) -> str | None:
    """The run's status, None if there is no such run (a compiled read: stream readers poll
    it)."""
    row = first(db, _STATUS, id=run_id)
    return None if row is None else str(row[0])


def stops_requested(db: Session, run_ids: Collection[str]) -> set[str]:
    """Which of ``run_ids`` have a stop requested: one read for all the turns a process runs
    (``agent.registry`` polls it several times a second while any runs)."""
    if not run_ids:
        return set()
    stmt = select(ChatRun.id).where(ChatRun.id.in_(run_ids), ChatRun.stop_requested.is_(True))
    return set(db.scalars(stmt))


def finish_run(
    db: Session, run_id: str, *, finished_at: datetime | None = None, **fields: Any
) -> None:
    """Record the outcome once (its duration from ``started_at``, which the row holds); a run
    that already ended keeps its first outcome."""
    row = db.execute(select(ChatRun.started_at).where(ChatRun.id == run_id)).first()
    finished_at = finished_at or utcnow()
    started_at = row.started_at if row is not None else None
    db.execute(
        update(ChatRun)
        .where(ChatRun.id == run_id, ChatRun.status.in_(LIVE))
        .values(finished_at=finished_at, duration_ms=duration_ms(started_at, finished_at),
                **fields)
    )  # fmt: skip


def _message(chat: ChatKey, message_id: str) -> tuple[str, str, str]:
    return (chat.account_id, chat.chat_id, message_id)  # ChatMessage's primary key


def upsert_message(
    db: Session, *, chat: ChatKey, message_id: str, role: str, message: dict[str, Any]
) -> None:
    """Store the message under its id in the chat (the same id in another chat is another
    message).

    An UPDATE first, without loading the row: a turn upserts its message after every step,
    and reading the whole stored message back only to replace it cost a query and a JSON
    decode of a message that grows with each step. The chat's turn lock (``claim_chat``)
    keeps two writers of one chat's messages apart, so nothing inserts in between.
    """
    updated = db.execute(
        update(ChatMessage)
        .where(
            ChatMessage.account_id == chat.account_id,
            ChatMessage.chat_id == chat.chat_id,
            ChatMessage.id == message_id,
        )
        .values(parts=message)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        db.add(ChatMessage(account_id=chat.account_id, chat_id=chat.chat_id, id=message_id,
                           role=role, parts=message, created_at=utcnow()))  # fmt: skip


def truncate_after(db: Session, chat: ChatKey, message_id: str) -> int:
    """Delete the chat's messages after ``message_id`` (a regenerate, or a resent message);
    returns how many went."""
    anchor = db.get(ChatMessage, _message(chat, message_id))
    if anchor is None:
        return 0
    later = select(ChatMessage).where(
        ChatMessage.account_id == chat.account_id,
        ChatMessage.chat_id == chat.chat_id,
        (ChatMessage.created_at > anchor.created_at)
        | ((ChatMessage.created_at == anchor.created_at) & (ChatMessage.id > anchor.id)),
    )
    rows = list(db.scalars(later))
    for row in rows:
        db.delete(row)
    return len(rows)


def message_of(db: Session, chat: ChatKey, message_id: str) -> dict[str, Any] | None:
    """The stored UIMessage with this id in the chat, if any."""
    row = db.get(ChatMessage, _message(chat, message_id))
    return dict(row.parts) if row is not None else None


def set_message_metadata(db: Session, chat: ChatKey, message_id: str, key: str, value: Any) -> bool:
    """Set one key of a stored message's metadata, the rest of the message as it was; False
    when the message is gone (the chat's turn lock keeps other writers away meanwhile)."""
    row = db.get(ChatMessage, _message(chat, message_id))
    if row is None:
        return False
    message = dict(row.parts)
    message["metadata"] = {**(message.get("metadata") or {}), key: value}
    row.parts = message
    return True


def session_repo(db: Session, session_id: str) -> tuple[str | None, str | None]:
    row = db.get(SessionRow, session_id)
    if row is None or row.repo_owner is None:
        return None, row.branch if row is not None else None
    return f"{row.repo_owner}/{row.repo_name}", row.branch


def last_model(db: Session, session_id: str, chat: ChatKey | None = None) -> str | None:
    """The model of the session's (or one chat's) most recent turn, if it had one."""
    stmt = select(ChatRun.model_id).where(ChatRun.session_id == session_id)
    if chat is not None:
        stmt = stmt.where(ChatRun.account_id == chat.account_id, ChatRun.chat_id == chat.chat_id)
    return db.scalars(stmt.order_by(ChatRun.created_at.desc()).limit(1)).first()


def auto_commit_of(db: Session, session_id: str) -> tuple[bool, str | None]:
    """Whether the session commits after each turn, and its title (for the message)."""
    row = db.get(SessionRow, session_id)
    return (bool(row.auto_commit_push), row.title) if row is not None else (False, None)


@dataclass(frozen=True)
class AutoShip:
    """What the push and pull request after an auto-commit need to know of the session."""

    clone_url: str | None
    """None: a repository-less session (nothing to push to)."""
    on_forge: bool
    """``repoOwner``/``repoName`` are known: the forge can hold its pull request."""
    auto_create_pr: bool
    pr_number: int | None
    base_branch: str | None


def auto_ship_of(db: Session, session_id: str) -> AutoShip | None:
    row = db.get(SessionRow, session_id)
    if row is None:
        return None
    return AutoShip(
        clone_url=row.clone_url,
        on_forge=bool(row.repo_owner and row.repo_name),
        auto_create_pr=bool(row.auto_create_pr),
        pr_number=row.pr_number,
        base_branch=row.base_branch,
    )


def count_queued(db: Session) -> int:
    """Turns accepted and not started yet, over all accounts (the metrics' queue gauge)."""
    stmt = select(func.count()).select_from(ChatRun).where(ChatRun.status == "queued")
    return int(db.execute(stmt).scalar_one())
