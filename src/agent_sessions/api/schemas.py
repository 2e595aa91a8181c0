"""Wire models, one class per direction (the HTTP contract). JSON is camelCase; timestamps ISO-8601
UTC.

Output models list every field without a default, so every field is always present (null where
unknown) and OpenAPI marks all of them required, as the seed document's clients expect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from agent_sessions.approval_rules import MAX_RULES, ApprovalRule, ToolName
from agent_sessions.workspace.repo import branch_problem
from agent_sessions.workspace.skills import MAX_REFS, SKILL_NAME_PATTERN

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
    base_branch: str | None = Field(
        description="With isNewBranch: the branch the new one was made from (null: the default)."
    )


class SkillRefInput(_Input):
    """A global skill: the ``skillName`` directory of ``source`` (an operator-allowed host
    directory, ``owner/repo`` on the forge, or a git URL under an allowed prefix)."""

    source: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    skill_name: Annotated[str, StringConstraints(pattern=SKILL_NAME_PATTERN)]


class SessionCreate(_Input):
    """Repository fields are checked by the route against the settings (``workspace.repo``).
    Unknown fields are ignored, as the reference API does (clients send their own extras);
    the known ones are validated."""

    model_config = ConfigDict(extra="ignore")

    title: NonEmptyText | None = None
    organization_id: UUIDStr | None = None
    artist_id: UUIDStr | None = None
    clone_url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    repo_owner: Annotated[str, StringConstraints(max_length=100)] | None = None
    repo_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    branch: Annotated[str, StringConstraints(max_length=255)] | None = None
    is_new_branch: StrictBool = False
    auto_commit_push: StrictBool = False
    auto_create_pr: StrictBool = False
    global_skill_refs: Annotated[list[SkillRefInput], Field(max_length=MAX_REFS)] = []
    sandbox_type: Literal["local", "vercel"] | None = None

    def skill_refs(self) -> list[dict[str, Any]]:
        return [r.model_dump(by_alias=True) for r in self.global_skill_refs]


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


class SessionListItem(Session):
    """A session in a list: the ``Session`` object plus the sidebar's state of its chats."""

    has_unread: bool = Field(description="Some chat has a reply the caller has not read.")
    has_streaming: bool = Field(description="Some chat has a turn in progress.")
    latest_chat_id: str | None = Field(description="The most recently updated chat.")


class Pagination(_Wire):
    limit: int
    offset: int | None = Field(description="The offset of this page; null when paged by cursor.")
    has_more: bool
    next_offset: int | None = Field(
        description="Pass as ?offset= for the next page (offset + this page's length); null "
        "at the end, or when paged by cursor."
    )


class SessionList(_Wire):
    sessions: list[SessionListItem]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )
    archived_count: int = Field(description="How many of the caller's sessions are archived.")
    pagination: Pagination


# --- chats -----------------------------------------------------------------------------------


class ApprovalRuleOut(_Wire):
    """Calls of ``tool`` (``*``: any) whose every argument named in ``match`` matches its
    regular expression wait for a person's approval (ADR 14)."""

    tool: str
    match: dict[str, str]


class ApprovalRuleIn(_Input):
    tool: ToolName = Field(description="A tool name, or * for any tool")
    match: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description="Argument name → regular expression, searched in the argument's text (a "
        "non-string argument as its JSON); every one must match",
    )


class PendingApproval(_Wire):
    """A tool call of the live turn waiting for a person's approval."""

    approval_id: str
    tool_call_id: str
    tool_name: str
    input: Any


class PendingQuestion(_Wire):
    """An ``ask_user_question`` call of the live turn waiting for its answer."""

    tool_call_id: str
    input: Any


class Chat(_Wire):
    id: str
    session_id: str
    title: str
    model_id: str | None
    active_stream_id: str | None
    last_assistant_message_at: datetime | None
    approval_rules: list[ApprovalRuleOut]
    """The chat's own approval rules, added to the operator's (never fewer approvals)."""
    created_at: datetime
    updated_at: datetime


class ChatSummary(Chat):
    has_unread: bool
    is_streaming: bool
    pending_approvals: list[PendingApproval]
    pending_questions: list[PendingQuestion]


class ChatList(_Wire):
    chats: list[ChatSummary]
    default_model_id: str


class ChatCreate(_Input):
    _nul_checked_elsewhere = frozenset({"id"})  # the route answers "Invalid chat id"

    id: Any = Field(default=None, json_schema_extra={"type": "string", "minLength": 1})


class ChatPatch(_Input):
    """A model id is any non-empty string here (a turn checks that it can be used)."""

    title: NonEmptyText | None = None
    model_id: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    approval_rules: list[ApprovalRuleIn] | None = Field(
        default=None,
        max_length=MAX_RULES,
        description="Replaces the chat's own approval rules ([] removes them); the operator's "
        "rules apply whatever this holds",
    )

    @field_validator("approval_rules")
    @classmethod
    def _rules_compile(cls, value: list[ApprovalRuleIn] | None) -> list[ApprovalRuleIn] | None:
        for rule in value or []:
            try:
                ApprovalRule.model_validate(rule.model_dump())
            except ValidationError as err:  # its message names the rule's bad pattern
                raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return value


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
    pending_approvals: list[PendingApproval]
    pending_questions: list[PendingQuestion]
    messages: list[UIMessage]


MessageIdStr = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class MessagesDeleted(_Wire):
    success: Literal[True] = True
    deleted_message_ids: list[str] = Field(description="In the chat's message order.")


class ChatFork(_Input):
    _nul_checked_elsewhere = frozenset({"id"})  # the route answers "Invalid chat id"

    message_id: MessageIdStr = Field(description="The assistant message the copy goes through.")
    id: Any = Field(default=None, json_schema_extra={"type": "string", "minLength": 1})


class AssistantMessageIn(_Input):
    """An AI SDK UI message of the assistant; its parts are checked by the route
    (``agent.assistant_parts``)."""

    id: MessageIdStr
    role: Literal["assistant"]
    parts: list[dict[str, Any]]
    metadata: dict[str, Any] | None = None


class AssistantMessageUpsert(_Input):
    """The message itself, or wrapped as ``{message}`` (the open-agents web app's form)."""

    message: AssistantMessageIn | None = None
    id: MessageIdStr | None = None
    role: Literal["assistant"] | None = None
    parts: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AssistantMessageUpsert:
        bare = self.model_dump(exclude_unset=True, exclude={"message"})
        if self.message is not None:
            if bare:
                raise ValueError("send either the message or {message}, not both")
        elif self.id is None or self.role is None or self.parts is None:
            raise ValueError("id, role (assistant) and parts are required")
        return self

    def resolved(self) -> AssistantMessageIn:
        if self.message is not None:
            return self.message
        assert self.id is not None and self.role is not None and self.parts is not None
        return AssistantMessageIn.model_construct(
            id=self.id, role=self.role, parts=self.parts, metadata=self.metadata
        )


class MessageUpserted(_Wire):
    success: Literal[True] = True
    status: Literal["inserted", "updated"]


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


# --- workspace files (ADR 13) ----------------------------------------------------------------

FileType = Literal["file", "directory", "symlink", "other"]


class FileEntry(_Wire):
    """One workspace entry as ``lstat`` sees it: a symlink is the link, never its target."""

    path: str
    type: FileType
    size: int
    """Bytes of a file; the target's length for a link; 0 for a directory."""


class FileTree(_Wire):
    path: str
    """The listed directory, workspace-relative (``""``: the root)."""
    entries: list[FileEntry]
    """Sorted by path, directories included, at most 5,000."""
    truncated: bool


class FileContent(_Wire):
    """A file's content: ``content`` for text, ``contentBase64`` for a binary file (a NUL in
    its first 8 KiB, or not UTF-8); the other one is null."""

    path: str
    size: int
    binary: bool
    content: str | None
    content_base64: str | None


# --- pull requests -----------------------------------------------------------------------------


class PullRequestCreate(_Input):
    title: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
        | None
    ) = None
    body: Annotated[str, StringConstraints(max_length=65536)] | None = None
    draft: StrictBool = False
    base: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        default=None, description="The branch to merge into; the repository's default if absent."
    )

    @field_validator("base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and (problem := branch_problem(v)):
            raise ValueError(problem)
        return v


class PullRequestMerge(_Input):
    method: Literal["merge", "squash", "rebase"] = "merge"


class PullRequestChecks(_Wire):
    """The head commit's check runs and commit statuses, counted together."""

    total: int
    passed: int
    failed: int
    pending: int


class PullRequest(_Wire):
    number: int
    url: str = Field(description="The pull request's page on the forge.")
    title: str
    state: Literal["open", "closed", "merged"]
    draft: bool
    mergeable: bool | None = Field(description="Null while the forge is still computing it.")
    mergeable_state: str | None = Field(
        description="The forge's word: clean, dirty (conflicts), blocked (required checks or "
        "reviews), behind, unstable (other checks failing), draft, unknown."
    )
    checks: PullRequestChecks | None = Field(
        description="Null when the token may not read the head commit's checks or statuses."
    )
    head: str
    base: str


class PullRequestOpened(PullRequest):
    created: bool = Field(description="False when the branch's open pull request was reused.")


class PullRequestMerged(PullRequest):
    merge_commit_sha: str


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
    """Keys it does not know are ignored, as the Recoup API does."""

    model_config = ConfigDict(extra="ignore")

    session_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    chat_id: ChatIdStr | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] | None = None
    """At most 100,000 characters: even JSON-escaped (6 bytes a character) under the body limit,
    so that one too long is its own 400, never the body limit's 413."""
    messages: list[dict[str, Any]] | None = None
    model: ModelId | None = None
    account_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="Run as this account: the caller's own, or a fellow member of one of the "
        "caller's organizations (else 403). The run, its session and chat are that account's.",
    )
    organization_id: UUIDStr | None = Field(
        default=None,
        description="The account the run is for must be a member (else 403); a session the run "
        "creates belongs to it.",
    )
    artist_id: UUIDStr | None = Field(
        default=None,
        description="Stored as the ``artistId`` of a session the run creates (an existing "
        "session keeps its own).",
    )


class RunAccepted(_Wire):
    run_id: str
    chat_id: str
    session_id: str


class SubagentUsage(_Wire):
    """The part of a run's (or a report's) figures that its ``task`` subagents used."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    tool_calls: int
    cost_usd: float | None


class CompactionUsage(_Wire):
    """The part of a run's (or a report's) figures that the summaries written to fit a
    conversation into its model's context window took (one model call each, ADR 15)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None


class RunUsage(_Wire):
    """A run's tokens, its subagents' and its context summary's included (``subagent`` and
    ``compaction`` are those parts). ``inputTokens`` includes ``cachedInputTokens`` (read from
    the provider's cache) and ``cacheWriteTokens``. ``costUsd`` was priced when the run
    finished; null: its model has no price."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    subagent: SubagentUsage
    compaction: CompactionUsage


class UsageFigures(_Wire):
    """Sums over finished runs; every figure includes the subagents' and the context
    summaries' (``subagent``, ``compaction``: those parts). ``costUsd`` is null when no run
    summed has a price; ``unpricedRuns`` counts the runs left out of it."""

    runs: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    tool_calls: int
    duration_ms: int
    cost_usd: float | None
    unpriced_runs: int
    subagent: SubagentUsage
    compaction: CompactionUsage


class UsageRow(UsageFigures):
    key: str
    """The UTC day (``YYYY-MM-DD``), the model id or the session id, after ``groupBy``."""


class UsageReport(_Wire):
    from_: datetime = Field(alias="from")
    to: datetime
    """The runs counted were created in ``[from, to)``."""
    group_by: Literal["day", "model", "session"]
    rows: list[UsageRow]
    total: UsageFigures


class ChatUsage(_Wire):
    chat_id: str
    usage: UsageFigures


class SessionUsage(_Wire):
    session_id: str
    usage: UsageFigures
    """All its chats' finished runs (chats deleted since included)."""
    chats: list[ChatUsage]
    """Each chat with a finished run, in chat id order."""


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
    text: str | None = Field(
        description="The reply's text parts joined by blank lines (the final reply once the run "
        "has ended); null before the run stored a reply."
    )


class RunList(_Wire):
    runs: list[Run] = Field(description="Newest first.")
    pagination: Pagination


class StopResult(_Wire):
    success: Literal[True] = True
    stopped: bool


class ModelInfo(_Wire):
    id: str
    provider: str
    available: bool
    default: bool = Field(
        description="The caller's default model (the account's, else the server's)."
    )
    served: bool = Field(
        description="Listed by the provider's endpoint itself (its /models), not an example."
    )
    demo: bool = Field(description="A built-in demo, not a language model (needs no key).")
    description: str | None


class ProviderInfo(_Wire):
    name: str
    configured: bool
    missing: str | None = Field(description="What to set to configure it; null when configured.")
    lists_models: bool = Field(
        description="Whether its endpoint was asked what it serves (configured, OpenAI-style)."
    )
    reachable: bool | None = Field(
        description="Whether that list answered; null when it was not asked."
    )
    error: str | None = Field(description="Why the list did not answer.")
    demo: bool


class ModelList(_Wire):
    models: list[ModelInfo]
    default_model_id: str = Field(description="The caller's default model.")
    providers: list[ProviderInfo]


class DefaultModelSet(_Input):
    model_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]


class DefaultModel(_Wire):
    """The model of the caller's new chats and of turns that name none."""

    model_id: str
    source: Literal["account", "operator"] = Field(
        description="account: set by the caller; operator: the server's "
        "AGENT_SESSIONS_DEFAULT_MODEL."
    )


# --- git in the sandbox ------------------------------------------------------------------------


class GitStatus(_Wire):
    """The workspace repository's state, from ``git status`` run in the sandbox."""

    branch: str | None = Field(description="The current branch; null when HEAD is detached.")
    head_sha: str | None = Field(description="HEAD's commit; null before the first commit.")
    detached: bool
    upstream: str | None = Field(description="The branch's upstream, e.g. origin/main.")
    ahead: int
    behind: int
    staged: int
    unstaged: int
    untracked: int
    conflicted: int
    has_uncommitted_changes: bool
    has_unpushed_commits: bool = Field(
        description="Ahead of the upstream; without one, commits no remote branch holds."
    )
    truncated: bool = Field(description="Too many changes to count: the counts are lower bounds.")


class GitCommitRequest(_Input):
    message: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    """Omitted: the chat's model writes one from the staged diff (a plain fallback without)."""
    chat_id: ChatIdStr | None = None
    """Whose model writes the message (default: the session's most recently used)."""

    @field_validator("message")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank (omit it to have one written)")
        return v


class GitCommit(_Wire):
    commit_sha: str
    message: str
    branch: str | None
    files_changed: int


class DiscardRequest(_Input):
    file_path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    """One path (a file or directory) relative to the workspace; omitted: every change."""


class DiscardResult(_Wire):
    discarded: str | None = Field(description="The path discarded; null for everything.")
    git_status: GitStatus


# --- skills ------------------------------------------------------------------------------------


class SkillInfo(_Wire):
    name: str
    description: str
    source: Literal["workspace", "global"] = Field(
        description="``workspace``: the project's .claude/skills or .agents/skills; ``global``: "
        "installed from globalSkillRefs."
    )
    path: str = Field(description="Workspace-relative path of its SKILL.md.")
    model_invocable: bool = Field(
        description="False when its frontmatter sets disable-model-invocation: the agent is "
        "not offered it."
    )


class SkillError(_Wire):
    path: str
    error: str


class Skills(_Wire):
    skills: list[SkillInfo]
    errors: list[SkillError] = Field(
        description="Skills that were skipped (bad frontmatter, duplicate name, a global skill "
        "that could not be installed), with the reason."
    )
    global_skill_refs: list[dict[str, Any]]


class SkillsUpdate(_Input):
    global_skill_refs: Annotated[list[SkillRefInput], Field(max_length=MAX_REFS)]

    def skill_refs(self) -> list[dict[str, Any]]:
        return [r.model_dump(by_alias=True) for r in self.global_skill_refs]


class SkillsUpdated(_Wire):
    global_skill_refs: list[dict[str, Any]]
    installed: bool = Field(
        description="True: installed into the running sandbox now. False: the sandbox is not "
        "active; they are installed when it is next restored."
    )
    errors: list[SkillError] = Field(description="Refs that could not be installed now.")


# --- workspace: forge credentials, push ----------------------------------------------------------


class ForgeTokenSet(_Input):
    token: Annotated[str, StringConstraints(min_length=1, max_length=1000)]

    @field_validator("token")
    @classmethod
    def _plain(cls, v: str) -> str:
        # The message never repeats the value: it is a secret.
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("must not contain whitespace or control characters")
        return v


class ForgeTokenStatus(_Wire):
    """Whether a forge token is set, and whose; never the token."""

    configured: bool
    source: Literal["account", "operator"] | None = Field(
        description="account: the caller's own token; operator: the server-wide fallback."
    )
    login: str | None
    updated_at: datetime | None


class PushResult(_Wire):
    branch: str
    pushed: bool = Field(description="False when the remote branch already had this commit.")
    commit_sha: str
    remote_url: str


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


# --- open-agents' /api/sandbox routes (aliases of the session's sandbox routes) ---------------

EpochMs = Annotated[int, Field(description="Milliseconds since the Unix epoch.")]


class SandboxSessionRef(_Input):
    """open-agents' body: the session; what else it sends (``repoUrl``, ``branch``,
    ``isNewBranch``, ``sandboxType``) is ignored, the session's own binding holds."""

    model_config = ConfigDict(extra="ignore")

    session_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SandboxLifecycleMs(_Wire):
    server_time: EpochMs
    state: LifecycleState | None
    last_activity_at: EpochMs | None
    hibernate_after: EpochMs | None
    sandbox_expires_at: EpochMs | None


class SandboxStatusCompat(_Wire):
    status: Literal["active", "no_sandbox"]
    has_snapshot: bool
    lifecycle_version: int
    lifecycle: SandboxLifecycleMs


class SandboxReconnect(_Wire):
    status: Literal["connected", "expired", "not_found", "no_sandbox"]
    has_snapshot: bool
    expires_at: EpochMs | None = Field(description="Only when connected.")
    lifecycle: SandboxLifecycleMs


class SandboxTiming(_Wire):
    ready_ms: int


class SandboxReady(_Wire):
    created_at: EpochMs
    timeout: int = Field(description="The sandbox's hard lifetime, in milliseconds.")
    current_branch: str | None
    mode: str = Field(description="The session's sandbox provider (local, vercel).")
    timing: SandboxTiming


class SandboxStopped(_Wire):
    success: Literal[True] = True
    already_stopped: bool


class SandboxExtended(_Wire):
    success: Literal[True] = True
    expires_at: EpochMs
    extended_by: int = Field(description="Milliseconds added to the hard deadline.")


class SandboxActivity(_Wire):
    success: bool
    reason: Literal["not-active"] | None = Field(description="Why nothing was recorded.")
