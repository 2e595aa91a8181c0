"""``/api/chat``: agent turns over the AI SDK UI message stream, stop, headless runs, models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from agent_sessions.agent import models, user_parts
from agent_sessions.agent.service import (
    Accepted,
    user_message_from_prompt,
    validate_user_message,
)
from agent_sessions.agent.stream import Chunk
from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.api.routes.usage import run_usage_out
from agent_sessions.exceptions import Conflict, InvalidInput
from agent_sessions.store import chats as chat_store
from agent_sessions.store.sessions import NewSession
from agent_sessions.store.turns import RunView

router = APIRouter(prefix="/api", tags=["agent"])

STREAM_HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
_SSE = {"description": "AI SDK UI message stream (SSE)", "content": {"text/event-stream": {}}}


KEEPALIVE_SECONDS = 15.0


SSE_DONE = b"data: [DONE]\n\n"


async def _encode(chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
    """Chunks as Server-Sent Events (``data: {json}``), then ``data: [DONE]``."""
    async for chunk in chunks:
        yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    yield SSE_DONE


async def _with_keepalive(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Send an SSE comment when the stream is quiet (a long tool call), so that proxies and
    clients do not take the connection for dead; SSE parsers ignore comments."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async for piece in body:
                await queue.put(piece)
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                piece = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if piece is None:
                break
            yield piece
        await task  # re-raise a reader error, if any
    finally:
        task.cancel()


TAIL_INDEX = "x-workflow-stream-tail-index"


def _sse(
    run_id: str, chunks: AsyncIterator[Chunk], headers: dict[str, str] | None = None
) -> StreamingResponse:
    return StreamingResponse(
        _with_keepalive(_encode(chunks)),
        media_type="text/event-stream",
        headers={**STREAM_HEADERS, "x-workflow-run-id": run_id, **(headers or {})},
    )


@router.post(
    "/chat",
    summary="Send a message and stream the agent's turn (AI SDK default chat transport)",
    responses={200: _SSE, **errors(400, 401, 403, 404, 409, 413)},
    response_class=StreamingResponse,
)
async def post_chat(caller: CallerDep, body: schemas.ChatTurnRequest) -> StreamingResponse:
    services, account_id = caller
    chat_id = body.id or body.chat_id
    last = body.message if body.message is not None else (body.messages or [{}])[-1]
    if not last:
        raise InvalidInput("messages must not be empty")
    if isinstance(last, dict) and last.get("role") == "assistant":
        return await _submit_tool_result(services, account_id, body, chat_id, last)
    accepted = await services.turns.start(
        account_id=account_id,
        session_id=body.session_id,
        chat_id=chat_id,
        user_message=validate_user_message(last, services.settings.max_attachment_bytes),
        model_id=body.model,
    )
    return _sse(accepted.run_id, services.turns.chunks(accepted.run_id))


async def _submit_tool_result(
    services: Any,
    account_id: str,
    body: schemas.ChatTurnRequest,
    chat_id: str | None,
    message: dict[str, Any],
) -> StreamingResponse:
    """What a client sends back into the live turn waiting on it, as the AI SDK sends it (the
    assistant message re-posted): a client tool's result (``ask_user_question``) and the
    answers to approval requests (parts in ``approval-responded``, ADR 14)."""
    if chat_id is None:
        raise InvalidInput("id (the chat id) is required")
    run = await services.turns.live_run(account_id, body.session_id, chat_id)
    if run is None:
        raise Conflict("This chat has no turn waiting for a tool result")
    parts = [p for p in message.get("parts") or [] if isinstance(p, dict)]
    answers = [
        part
        for part in parts
        if part.get("type") == "tool-ask_user_question"
        and part.get("state") == "output-available"
        and isinstance(part.get("toolCallId"), str)
    ]
    decisions = await _approval_decisions(services, run, parts)
    if not answers and not decisions:
        if any(p.get("state") == "approval-responded" for p in parts):
            raise Conflict("No approval of this message is waiting for an answer")
        raise InvalidInput(
            "The assistant message carries no ask_user_question result and no answer to a "
            "pending approval"
        )
    for part in answers:  # the outputs are all the turn takes of the message
        user_parts.check_answer(part.get("output"))
    # The client continues the assistant message it has: send only what comes after the
    # answer (counted before the answer goes, so nothing is missed), under a fresh start.
    start = body.start_index
    if start is None:
        start = await services.turns.stream_length(run.id)
    for part in answers:
        await services.turns.answer(run.id, part["toolCallId"], part.get("output"))
    for call_id, decision in decisions.items():
        await services.turns.answer(run.id, call_id, decision)
    return _sse(run.id, services.turns.continuation(run, start))


MAX_REASON = 2000


async def _approval_decisions(
    services: Any, run: RunView, parts: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The approval answers in ``parts`` for the run's pending approvals, by tool call id;
    answers to approvals no longer pending (already answered) are left out."""
    responded = [p for p in parts if p.get("state") == "approval-responded"]
    if not responded:
        return {}
    pending = {p["approvalId"]: p["toolCallId"] for p in await services.turns.waiting(run)}
    decisions: dict[str, dict[str, Any]] = {}
    for part in responded:
        approval = part.get("approval")
        if not isinstance(approval, dict) or not isinstance(approval.get("approved"), bool):
            raise InvalidInput("An approval response needs approval.approved (true or false)")
        reason = approval.get("reason")
        if reason is not None and (
            not isinstance(reason, str) or len(reason) > MAX_REASON or "\x00" in reason
        ):
            raise InvalidInput(
                f"approval.reason must be a string of at most {MAX_REASON} characters"
            )
        call_id = pending.get(approval.get("id"))
        if call_id is None:
            continue
        decisions[call_id] = {"approved": approval["approved"], "reason": reason or None}
    missing = sorted(set(pending.values()) - set(decisions))
    if decisions and missing:  # the turn goes on only once all are answered: answer together
        raise InvalidInput(f"Answer every waiting approval together; missing: {', '.join(missing)}")
    return decisions


@router.get(
    "/chat/{chatId}/stream",
    summary="Resume the live turn's stream from chunk startIndex (204 when none is live)",
    description=f"The `{TAIL_INDEX}` header holds the index of the last chunk written when "
    "the response began (-1: none yet), as Vercel Workflow streams give it. A negative "
    "startIndex counts back from there: -N starts N chunks before the end (at 0 at most).",
    responses={
        200: {**_SSE, "headers": {TAIL_INDEX: {"schema": {"type": "integer"}}}},
        204: {"description": "No turn is live"},
        **errors(401, 404),
    },
    response_class=StreamingResponse,
)
async def resume_stream(
    caller: CallerDep,
    chatId: str,
    startIndex: int = 0,
) -> Response:
    services, account_id = caller

    _, run_id = await services.db.query_call(
        lambda db: chat_store.live_stream(db, chat_id=chatId, account_id=account_id)
    )
    if run_id is None:
        return Response(status_code=204)
    tail = await services.turns.tail_index(run_id)
    # Vercel's WorkflowChatTransport reads a negative start from the tail (its
    # initialStartIndex), and resolves it with the header just as done here.
    start = startIndex if startIndex >= 0 else max(0, tail + 1 + startIndex)
    return _sse(run_id, services.turns.chunks(run_id, start), {TAIL_INDEX: str(tail)})


@router.post(
    "/chat/{chatId}/stop",
    response_model=schemas.StopResult,
    summary="Stop the chat's live turn; open tool calls end as errors, the partial reply stays",
    responses=errors(401, 404),
)
async def stop_turn(caller: CallerDep, chatId: str) -> schemas.StopResult:
    services, account_id = caller
    chat = await services.db.read_call(
        lambda db: chat_store.get_owned_chat(db, chat_id=chatId, account_id=account_id)
    )
    stopped = await services.turns.stop(account_id, chat.session_id, chatId)
    return schemas.StopResult(stopped=stopped)


@router.post(
    "/chat/runs",
    status_code=202,
    response_model=schemas.RunAccepted,
    summary="Start a headless turn (a new session and chat unless given)",
    description="Keys the body does not know are ignored. `Location` names the run's status.",
    responses={
        202: {"headers": {"Location": {"schema": {"type": "string"}}}},
        **errors(400, 401, 403, 404, 409, 413),
    },
)
async def create_run(
    caller: CallerDep, body: schemas.RunCreate, response: Response
) -> schemas.RunAccepted:
    services, caller_id = caller
    if (body.prompt is None) == (body.messages is None):
        raise InvalidInput("Give exactly one of prompt or messages")
    if body.prompt is not None:
        raw = user_message_from_prompt(body.prompt)
    elif not body.messages:
        raise InvalidInput("messages must not be empty")
    else:
        raw = body.messages[-1]
    message = validate_user_message(raw, services.settings.max_attachment_bytes)
    account_id = await services.turns.acting_account(
        caller_id, for_account=body.account_id, organization_id=body.organization_id
    )
    new = None
    if body.session_id is None:  # a new session, made with the turn (or not at all)
        new = NewSession(
            sandbox_type=services.settings.sandbox_provider,
            organization_id=body.organization_id,
            artist_id=body.artist_id,
        )
    accepted: Accepted = await services.turns.start(
        account_id=account_id, session_id=body.session_id, new_session=new,
        chat_id=body.chat_id, user_message=message, model_id=body.model, headless=True,
    )  # fmt: skip
    if accepted.session_created:
        await services.lifecycle.session_created(accepted.session_id)
    response.headers["Location"] = f"/api/chat/runs/{accepted.run_id}"
    return schemas.RunAccepted(
        run_id=accepted.run_id, chat_id=accepted.chat_id, session_id=accepted.session_id
    )


@router.get(
    "/chat/runs/{runId}",
    response_model=schemas.Run,
    summary="A run's status, usage and reply text",
    description="For the run's account, or a fellow member of one of its organizations.",
    responses=errors(401, 403, 404),
)
async def get_run(caller: CallerDep, runId: str) -> schemas.Run:
    services, account_id = caller
    return run_out(*await services.turns.run_with_reply(account_id, runId))


def run_out(run: RunView, text: str | None = None) -> schemas.Run:
    return schemas.Run(
        run_id=run.id, status=run.status, chat_id=run.chat_id,
        session_id=run.session_id, model=run.model_id, message_id=run.assistant_message_id,
        usage=run_usage_out(run),
        tool_calls=run.tool_calls, steps=run.steps, finish_reason=run.finish_reason,
        error=run.error, created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, duration_ms=run.duration_ms, text=text,
    )  # fmt: skip


@router.get(
    "/models",
    response_model=schemas.ModelList,
    summary="Models this server can use: examples per provider (unavailable without "
    "credentials), what each configured OpenAI-compatible endpoint serves, the demo model; "
    "the caller's default marked",
    responses=errors(401),
)
async def list_models(caller: CallerDep) -> schemas.ModelList:
    services, account_id = caller
    settings = services.settings
    default_id = await services.db.query_call(
        lambda r: models.default_model_for(r, settings, account_id)
    )
    listed, providers = await models.usable_models(settings, default_id)
    return schemas.ModelList(
        models=[schemas.ModelInfo.model_validate(m) for m in listed],
        default_model_id=default_id,
        providers=[schemas.ProviderInfo.model_validate(p) for p in providers],
    )
