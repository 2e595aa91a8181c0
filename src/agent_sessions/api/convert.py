"""Store rows → wire models. Kept apart so every route renders the same object the same way."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from agent_sessions.agent import approvals
from agent_sessions.api import schemas
from agent_sessions.store.chats import ChatWithUnread
from agent_sessions.store.models import Chat, ChatMessage, SessionRow
from agent_sessions.store.sessions import ChatsState


def session_out(row: SessionRow | Row[Any], *, hunks: bool = True) -> schemas.Session:
    """``hunks=False`` (lists): ``cachedDiff`` keeps its files' counts but not their patch
    text, which can reach ``DIFF_MAX_BYTES`` per session (``GET …/diff/cached`` has it)."""
    # Validated (in pydantic-core's C) rather than model_construct, whose per-field Python loop
    # cost four times as much: 43 µs against 10 µs per session.
    return schemas.Session.model_validate(_session_fields(row, hunks))


def session_item_out(row: SessionRow | Row[Any], state: ChatsState) -> schemas.SessionListItem:
    """A session of a list: without hunks, with its chats' state."""
    return schemas.SessionListItem.model_validate(
        {
            **_session_fields(row, False),
            "has_unread": state.has_unread,
            "has_streaming": state.has_streaming,
            "latest_chat_id": state.latest_chat_id,
        }
    )


def _session_fields(row: SessionRow | Row[Any], hunks: bool) -> dict[str, Any]:
    return dict(
        id=row.id,
        user_id=row.account_id,
        artist_id=row.artist_id,
        title=row.title,
        status=row.status,
        repo_owner=row.repo_owner,
        repo_name=row.repo_name,
        branch=row.branch,
        clone_url=row.clone_url,
        is_new_branch=row.is_new_branch,
        global_skill_refs=row.global_skill_refs or [],
        sandbox_state=row.sandbox_state,
        lifecycle_state=row.lifecycle_state,
        lifecycle_version=row.lifecycle_version,
        last_activity_at=row.last_activity_at,
        sandbox_expires_at=row.sandbox_expires_at,
        hibernate_after=row.hibernate_after,
        lifecycle_run_id=row.lifecycle_run_id,
        lifecycle_error=row.lifecycle_error,
        lines_added=row.lines_added,
        lines_removed=row.lines_removed,
        snapshot_url=row.snapshot_url,
        snapshot_created_at=row.snapshot_created_at,
        snapshot_size_bytes=row.snapshot_size_bytes,
        cached_diff=row.cached_diff if hunks else _without_hunks(row.cached_diff),
        cached_diff_updated_at=row.cached_diff_updated_at,
        auto_commit_push=row.auto_commit_push,
        auto_create_pr=row.auto_create_pr,
        pr_number=row.pr_number,
        pr_status=row.pr_status,
        base_branch=row.base_branch,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _chat_fields(chat: Chat) -> dict[str, Any]:
    return {
        "id": chat.id,
        "session_id": chat.session_id,
        "title": chat.title,
        "model_id": chat.model_id,
        "active_stream_id": chat.active_stream_id,
        "last_assistant_message_at": chat.last_assistant_message_at,
        "approval_rules": chat.approval_rules or [],
        "created_at": chat.created_at,
        "updated_at": chat.updated_at,
    }


def chat_out(chat: Chat) -> schemas.Chat:
    return schemas.Chat(**_chat_fields(chat))


def chat_summary_out(item: ChatWithUnread, live: dict[str, Any] | None) -> schemas.ChatSummary:
    """``live``: the assistant message of the chat's live turn (``store.turns.live_reply``)."""
    return schemas.ChatSummary(
        **_chat_fields(item.chat),
        has_unread=item.has_unread,
        is_streaming=item.chat.active_stream_id is not None,
        **waiting_out(live),
    )


def waiting_out(live: dict[str, Any] | None) -> dict[str, Any]:
    """``pendingApprovals`` and ``pendingQuestions`` of a chat, from its live turn's message."""
    return {
        "pending_approvals": approvals.pending_approvals(live),
        "pending_questions": approvals.pending_questions(live),
    }


def message_out(message: ChatMessage) -> schemas.UIMessage:
    stored = dict(message.parts)
    stored.setdefault("id", message.id)
    stored.setdefault("role", message.role)
    stored.setdefault("parts", [])
    return schemas.UIMessage.model_validate(stored)


def _without_hunks(diff: dict[str, Any] | None) -> dict[str, Any] | None:
    if not diff or not isinstance(diff.get("files"), list):
        return diff
    files = [{k: v for k, v in f.items() if k != "diff"} for f in diff["files"]]
    return {**diff, "files": files}
