"""Wire models, one class per direction (DESIGN §3). JSON is camelCase; timestamps ISO-8601 UTC.

Output models list every field without a default, so every field is always present (null where
unknown) and OpenAPI marks all of them required, as the seed document's clients expect.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

SessionStatus = Literal["running", "completed", "failed", "archived"]
LifecycleState = Literal[
    "provisioning", "active", "hibernating", "hibernated", "restoring", "archived", "failed"
]
UUIDStr = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
    Field(json_schema_extra={"format": "uuid"}),
]
NonEmptyText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
]
ModelId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=200, pattern=r"^[^/\s]+/\S+$"
    ),
]
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<![./])$")
# scp-like ``user@host:path`` must not start with "-": git would read it as an option
# (``-u@x:cmd`` is ``--upload-pack`` with a command to run).
_CLONE_URL = re.compile(r"^(https?|ssh|git)://[^\s]+$|^(?!-)[\w.-]+@[\w.-]+:[^\s]+$")


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
        serialize_by_alias=True,
    )  # fmt: skip


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _Input(_Wire):
    model_config = ConfigDict(extra="forbid")
    _nul_checked_elsewhere: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _no_nul(cls, v: Any, info: ValidationInfo) -> Any:
        """PostgreSQL text and jsonb cannot hold NUL, so refuse it here (400) on both backends."""
        if info.field_name not in cls._nul_checked_elsewhere and _has_nul(v):
            raise ValueError("must not contain NUL characters")
        return v


# --- errors ----------------------------------------------------------------------------------


class Error(_Wire):
    """Every error response. Validation errors add ``path``, the offending field's location.

    ``status`` has no default so OpenAPI lists it as required, as the seed's ``Error`` does
    (responses are built as plain dicts in ``errors.py``; this class only documents them).
    """

    status: Literal["error"]
    error: str
    path: list[str | int] | None = None


# --- sessions --------------------------------------------------------------------------------


class Session(_Wire):
    """Agent session, exactly the seed document's ``Session`` object."""

    id: str
    user_id: UUIDStr = Field(description="Owning account id.")
    artist_id: UUIDStr | None
    title: str
    status: SessionStatus
    repo_owner: str | None
    repo_name: str | None
    branch: str | None
    clone_url: str | None
    is_new_branch: bool
    global_skill_refs: list[dict[str, Any]]
    sandbox_state: dict[str, Any] | None
    lifecycle_state: LifecycleState | None
    lifecycle_version: int
    last_activity_at: datetime | None
    sandbox_expires_at: datetime | None
    hibernate_after: datetime | None
    lifecycle_run_id: str | None
    lifecycle_error: str | None
    lines_added: int | None
    lines_removed: int | None
    snapshot_url: str | None
    snapshot_created_at: datetime | None
    snapshot_size_bytes: int | None
    cached_diff: dict[str, Any] | None
    cached_diff_updated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Beyond the seed's object (clients that do not know them ignore them):
    auto_commit_push: bool = Field(
        description="A turn that changed files ends with a commit and a push."
    )
    auto_create_pr: bool = Field(description="The first automatic push opens a pull request.")
    pr_number: int | None = Field(description="The session's pull request on the forge.")
    pr_status: Literal["open", "closed", "merged"] | None = Field(
        description="The pull request's state, as last seen on the forge."
    )


class SessionCreate(_Input):
    title: NonEmptyText | None = None
    organization_id: UUIDStr | None = None
    artist_id: UUIDStr | None = None
    clone_url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    branch: str | None = None
    is_new_branch: StrictBool = False
    global_skill_refs: Annotated[list[dict[str, Any]], Field(max_length=50)] = []
    sandbox_type: Literal["local", "vercel"] | None = None

    @field_validator("clone_url")
    @classmethod
    def _clone_url(cls, v: str | None) -> str | None:
        if v is not None and not _CLONE_URL.match(v):
            raise ValueError("must be an http(s), ssh or git URL (or user@host:path)")
        return v

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str | None) -> str | None:
        if v is not None and not _BRANCH.match(v):
            raise ValueError("is not a valid git branch name")
        return v


class SessionPatch(_Input):
    """All optional; an explicit ``null`` is refused (nothing here can be unset)."""

    title: NonEmptyText | None = None
    status: SessionStatus | None = None
    lines_added: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    lines_removed: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None

    @field_validator("title", "status", "lines_added", "lines_removed", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("may not be null")
        return v


class SessionResponse(_Wire):
    session: Session


class SessionCreated(_Wire):
    session: Session
    chat: Chat


class SessionList(_Wire):
    sessions: list[Session]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


# --- chats -----------------------------------------------------------------------------------


class Chat(_Wire):
    id: str
    session_id: str
    title: str
    model_id: str | None
    active_stream_id: str | None
    last_assistant_message_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ChatSummary(Chat):
    has_unread: bool
    is_streaming: bool


class ChatList(_Wire):
    chats: list[ChatSummary]
    default_model_id: str


class ChatCreate(_Input):
    _nul_checked_elsewhere = frozenset({"id"})  # the route answers "Invalid chat id"

    id: Any = Field(default=None, json_schema_extra={"type": "string", "minLength": 1})


class ChatPatch(_Input):
    title: NonEmptyText | None = None
    model_id: ModelId | None = None


class ChatResponse(_Wire):
    chat: Chat


class UIMessage(BaseModel):
    """A stored AI SDK UI message, returned as it was stored."""

    model_config = ConfigDict(extra="allow")

    id: str
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]]
    metadata: Any | None = None


class ChatDetail(_Wire):
    chat: Chat
    is_streaming: bool
    messages: list[UIMessage]


class Success(_Wire):
    success: Literal[True] = True


class Health(_Wire):
    status: Literal["ok"] = "ok"
    version: str


SessionCreated.model_rebuild()


# --- sandbox -----------------------------------------------------------------------------------


class LifecycleAction(_Input):
    expected_lifecycle_version: Annotated[StrictInt, Field(ge=0)] | None = None


class SandboxState(_Wire):
    """The lifecycle of a session's sandbox, read from the database only."""

    lifecycle_state: LifecycleState | None
    lifecycle_version: int
    last_activity_at: datetime | None
    hibernate_after: datetime | None
    sandbox_expires_at: datetime | None
    has_snapshot: bool
    lifecycle_error: str | None
    server_time: datetime


# --- agent turns -------------------------------------------------------------------------------

ChatIdStr = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s/]+$")]


class ChatTurnRequest(_Wire):
    """What the AI SDK's default chat transport sends (``id``, ``messages``, ``trigger``,
    ``messageId``) plus ``sessionId``; or the short form ``{chatId, sessionId, message}``.
    Other fields a client adds to the body are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: ChatIdStr | None = None
    chat_id: ChatIdStr | None = None
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    messages: list[dict[str, Any]] | None = None
    message: dict[str, Any] | None = None
    trigger: Literal["submit-message", "regenerate-message", "submit-tool-result"] | None = None
    message_id: str | None = None
    model: ModelId | None = None
    start_index: Annotated[StrictInt, Field(ge=0)] | None = None
    """For a tool-result submission: resume the live stream from this chunk."""


class RunCreate(_Input):
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    chat_id: ChatIdStr | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=200_000)] | None = None
    messages: list[dict[str, Any]] | None = None
    model: ModelId | None = None


class RunAccepted(_Wire):
    run_id: str
    chat_id: str
    session_id: str


class RunUsage(_Wire):
    input_tokens: int
    output_tokens: int


class Run(_Wire):
    run_id: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    chat_id: str
    session_id: str
    model: str
    message_id: str
    usage: RunUsage
    tool_calls: int
    steps: int
    finish_reason: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class StopResult(_Wire):
    success: Literal[True] = True
    stopped: bool


class ModelInfo(_Wire):
    id: str
    provider: str
    available: bool
    default: bool


class ModelList(_Wire):
    models: list[ModelInfo]
    default_model_id: str


# --- workspace: diff ---------------------------------------------------------------------------


class DiffFile(_Wire):
    path: str
    old_path: str | None = Field(description="The path before a rename; null otherwise.")
    status: Literal["added", "modified", "deleted", "renamed"]
    additions: int
    deletions: int
    binary: bool
    generated: bool = Field(
        description="A lock file or a generated file (``linguist-generated``, *.min.js, dist/ "
        "…): counted, its hunks left out."
    )
    diff: str | None = Field(
        description="The file's section of the unified diff (headers and hunks); null for "
        "binary and generated files and for files past the size caps (``truncated``)."
    )


class DiffSummary(_Wire):
    total_files: int
    total_additions: int
    total_deletions: int


class Diff(_Wire):
    """What the workspace changed against its base: committed, staged, unstaged and untracked
    changes alike (untracked files are added files)."""

    files: list[DiffFile]
    summary: DiffSummary
    base_ref: str | None = Field(
        description="``origin/<default branch>`` when the base is its merge-base with HEAD, "
        "``HEAD`` otherwise; null before the first commit."
    )
    base_commit: str | None = Field(description="The base commit (the empty tree: null).")
    truncated: bool = Field(
        description="Some file lost its hunks to the size caps (its counts are kept)."
    )


class CachedDiff(Diff):
    cached_at: datetime = Field(description="When the cached diff's computation started.")
