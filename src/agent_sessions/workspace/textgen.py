"""Short texts written by the session's chat model: a pull request's title and body (and any
other one-off text the workspace needs, such as a commit message).

The model is the one the session's last turn used, else its chat's, else the default. Without
a usable model, or when it fails or says nothing, callers fall back to a plain text of their
own: writing prose is a convenience, never a reason for a request to fail. The prompt holds
what the caller gives (a diff, commit subjects), never a credential.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_sessions.agent.models import build_model, check_usable
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.settings import Settings
from agent_sessions.store.models import Chat
from agent_sessions.store.turns import last_model

__all__ = ["WRITE_TIMEOUT_SECONDS", "session_model", "write"]

log = logging.getLogger(__name__)

WRITE_TIMEOUT_SECONDS = 60.0
MAX_OUTPUT_TOKENS = 1200


def session_model(db: Session, session_id: str, default: str, chat: Chat | None = None) -> str:
    """The model to write with: ``chat``'s own, else its latest turn's; without a chat, the
    session's latest turn's, else its latest chat that names one; else ``default``."""
    if chat is not None:
        return chat.model_id or last_model(db, session_id, chat.key) or default
    if run := last_model(db, session_id):
        return run
    named = db.scalars(
        select(Chat.model_id)
        .where(Chat.session_id == session_id, Chat.model_id.is_not(None))
        .order_by(Chat.updated_at.desc())
        .limit(1)
    ).first()
    return named or default


async def write(
    settings: Settings,
    model_id: str,
    instructions: str,
    prompt: str,
    *,
    timeout: float = WRITE_TIMEOUT_SECONDS,  # noqa: ASYNC109 (the model call is cancelled)
) -> str | None:
    """The model's answer to ``prompt``, or None (no usable model, a failure, a timeout,
    nothing said)."""
    from pydantic_ai import Agent
    from pydantic_ai.settings import ModelSettings

    try:
        check_usable(settings, model_id)
        model = build_model(settings, model_id)
    except AgentSessionsError as err:
        log.info("no model to write with (%s): falling back", err.message)
        return None
    writer: Agent[None, str] = Agent(model, instructions=instructions)
    try:
        async with asyncio.timeout(timeout):
            result = await writer.run(
                prompt, model_settings=ModelSettings(max_tokens=MAX_OUTPUT_TOKENS)
            )
    except Exception as err:  # any failure of the model: the caller's plain text instead
        log.warning("the model %s could not write (%s): falling back", model_id, type(err).__name__)
        return None
    text = result.output.strip()
    return text or None
