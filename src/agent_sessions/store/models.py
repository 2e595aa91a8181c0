"""SQLAlchemy models: the tables behind accounts, keys, organizations, sessions and chats.

Column names follow the reference products (``reference-product-notes.md`` §2) so their data and
queries translate directly. Enum-like columns are plain strings checked by the API schemas.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    jwt_subject: Mapped[str | None] = mapped_column(String(255), unique=True)
    """The ``sub`` of Bearer JWTs that act as this account (besides the account id itself)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    default_model_id: Mapped[str | None] = mapped_column(String(200))
    """The model of the account's new chats and of turns that name none (the operator's
    ``DEFAULT_MODEL`` when unset)."""


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(16))
    """Readable start of the key, for listings and logs; the key itself is never stored."""
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ForgeCredential(Base):
    """An account's forge token, encrypted (``workspace.credentials``); never read back out."""

    __tablename__ = "forge_credentials"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    token_encrypted: Mapped[str] = mapped_column(Text)
    login: Mapped[str | None] = mapped_column(String(200))
    """The forge user the token belongs to, when the forge told us (for display only)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SessionRow(Base):
    """One agent session (``Session`` on the wire; renamed here to avoid SQLAlchemy's)."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_account_created", "account_id", "created_at", "id"),
        Index("ix_sessions_account_lifecycle", "account_id", "lifecycle_state"),  # quotas
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL")
    )
    artist_id: Mapped[str | None] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="running")
    repo_owner: Mapped[str | None] = mapped_column(String(200))
    repo_name: Mapped[str | None] = mapped_column(String(200))
    branch: Mapped[str | None] = mapped_column(String(255))
    base_branch: Mapped[str | None] = mapped_column(String(255))
    """For ``is_new_branch``: the branch the new one is made from (None: the default)."""
    clone_url: Mapped[str | None] = mapped_column(Text)
    is_new_branch: Mapped[bool] = mapped_column(Boolean, default=False)
    global_skill_refs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    sandbox_type: Mapped[str] = mapped_column(String(16), default="local")
    sandbox_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    lifecycle_state: Mapped[str | None] = mapped_column(String(16))
    lifecycle_version: Mapped[int] = mapped_column(Integer, default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sandbox_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hibernate_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifecycle_run_id: Mapped[str | None] = mapped_column(String(128))
    lifecycle_error: Mapped[str | None] = mapped_column(Text)
    lines_added: Mapped[int | None] = mapped_column(Integer, default=0)
    lines_removed: Mapped[int | None] = mapped_column(Integer, default=0)
    snapshot_url: Mapped[str | None] = mapped_column(Text)
    snapshot_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snapshot_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cached_diff: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cached_diff_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    auto_commit_push: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_create_pr: Mapped[bool] = mapped_column(Boolean, default=False)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    pr_status: Mapped[str | None] = mapped_column(String(16))
    """``open``, ``closed`` or ``merged``, as last seen on the forge."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatKey(NamedTuple):
    """A chat's primary key. Chat ids are the client's, unique per owning account (ADR 9): an
    id another account uses is another chat, so a chat is always found through its account."""

    account_id: str
    chat_id: str


def _chat_fk() -> ForeignKeyConstraint:
    """A reference to a chat: the owner's account and the chat id, deleted with the chat."""
    return ForeignKeyConstraint(
        ["account_id", "chat_id"], ["chats.account_id", "chats.id"], ondelete="CASCADE"
    )


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "id"),
        Index("ix_chats_session_created", "session_id", "created_at"),
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    """The session's account (sessions never change hands)."""
    id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(500))
    model_id: Mapped[str | None] = mapped_column(String(200))
    active_stream_id: Mapped[str | None] = mapped_column(String(128))
    last_assistant_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approval_rules: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    """Approval rules this chat adds to the operator's (ADR 14)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def key(self) -> ChatKey:
        return ChatKey(self.account_id, self.id)


class ChatMessage(Base):
    """A stored UI message; ``parts`` holds the whole UIMessage (parts and metadata). Its id is
    the client's (or ours for replies), unique within its chat."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "chat_id", "id"),
        _chat_fk(),
        Index("ix_chat_messages_chat_created", "account_id", "chat_id", "created_at", "id"),
    )

    account_id: Mapped[str] = mapped_column(String(36))
    chat_id: Mapped[str] = mapped_column(String(128))
    id: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    parts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatRead(Base):
    """When the account last read the chat: its owner's mark (only the owner reaches a chat)."""

    __tablename__ = "chat_reads"
    __table_args__ = (_chat_fk(),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_read_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChatRun(Base):
    """One agent turn (a DBOS workflow of the same id): its status and usage record."""

    __tablename__ = "chat_runs"
    __table_args__ = (
        _chat_fk(),
        Index("ix_chat_runs_chat_created", "account_id", "chat_id", "created_at"),
        Index("ix_chat_runs_account_status", "account_id", "status"),  # quotas
        Index("ix_chat_runs_account_created", "account_id", "created_at"),  # usage, runs
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    """The session's account, who started the run (only the owner can)."""
    model_id: Mapped[str] = mapped_column(String(200))
    assistant_message_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    """queued | running | completed | failed | cancelled"""
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    headless: Mapped[bool] = mapped_column(Boolean, default=False)
    """Started by ``POST /api/chat/runs``: no client tools (nobody would answer them)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Executions of the turn's workflow so far; above 1 the turn is a recovery after a crash."""
    executor_id: Mapped[str | None] = mapped_column(String(64))
    """The process (host) that accepted it: it starts the turn, or holds it waiting for a slot
    (None: accepted before hosts were recorded)."""
    # Usage: each figure is the run's total, its subagents' included; ``subagent_*`` is the
    # subagents' part of it. ``input_tokens`` includes the cached ones (read or written).
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    subagent_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    subagent_output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    subagent_cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    subagent_cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    subagent_tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    """The run's cost in billionths of a US dollar, priced when it finished (``agent.pricing``);
    None: its model has no price. Integers, so that sums are exact on both databases."""
    subagent_cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    # The summary the turn wrote to fit its context (ADR 15): its part of the figures above.
    compaction_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    compaction_output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    compaction_cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    """``finished_at - started_at``, stored so that usage sums it in SQL on both databases."""
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Host(Base):
    """A ``serve`` or ``worker`` process sharing the database, by its DBOS executor id.

    Its heartbeat says it lives; a host silent past the timeout is taken over, once, by a live
    one (``lifecycle.hosts``). Local sandboxes live on their host (their state names it).
    """

    __tablename__ = "hosts"

    executor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance: Mapped[str] = mapped_column(String(32))
    """Random per process start: tells a restart from a second process with the same id."""
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(Text)
    """Where it serves HTTP, for requests forwarded to it (None: a ``worker``)."""
    sandbox_provider: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8))
    """``live``, ``stopped`` (shut down cleanly: its sessions wait for it) or ``gone``
    (silent past the timeout, taken over)."""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_over_by: Mapped[str | None] = mapped_column(String(64))
    taken_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
