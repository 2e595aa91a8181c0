"""What the API asks of agent turns: accept one, stream it, stop it, report on runs.

A turn is accepted in one transaction — the account's limits checked (``store.quotas``), the
chat's ``activeStreamId`` claimed by compare-and-set, the user message stored, the run
recorded — and only then started, with the run id as the workflow id: here and now when this
process has room, else when a slot frees, round robin by account (:mod:`.waiting`); with a
global limit, through the ``agent-turns`` queue, partitioned by account. A crash between
acceptance and start leaves a ``queued`` run with no workflow, which :meth:`Turns.reconcile`
enqueues at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from dbos import DBOS, Queue, SetEnqueueOptions, SetWorkflowID, WorkflowHandleAsync
from sqlalchemy.orm import Session

from agent_sessions import logs, tracing
from agent_sessions.agent import approvals, models, stream, turn, user_parts
from agent_sessions.agent.registry import runs
from agent_sessions.agent.sink import as_shown
from agent_sessions.agent.stream import STREAM_KEY, Chunk, RunQuestions, StreamReader
from agent_sessions.agent.waiting import WaitingTurns
from agent_sessions.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from agent_sessions.faults import fault_point
from agent_sessions.ids import nanoid
from agent_sessions.lifecycle.runtime import TURN_QUEUE, off_loop, reconcile_queue
from agent_sessions.settings import Settings
from agent_sessions.store import Database, accounts, quotas, sessions
from agent_sessions.store import chats as chat_store
from agent_sessions.store import turns as store
from agent_sessions.store.models import Chat
from agent_sessions.store.sessions import NewSession
from agent_sessions.store.titles import title_from_prompt

_log = logging.getLogger(__name__)
LOST_CALL = "The server running this turn stopped before the call ended."

LIVE_TURN = "This chat already has a turn in progress"
MAX_MESSAGE_ID = 128
"""The width of ``chat_messages.id``: a longer client id cannot be stored."""


@dataclass(frozen=True)
class Accepted:
    run_id: str
    chat_id: str
    session_id: str
    session_created: bool = False


def _instrument_agents() -> None:
    """pydantic-ai's spans for every agent run, model request and tool call, without the
    prompts, outputs and tool arguments (a trace store is no place for the users' code)."""
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings

    Agent.instrument_all(
        InstrumentationSettings(include_content=False, include_binary_content=False)
    )


class Turns:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._queue: Queue | None = None
        self._waiting = WaitingTurns()  # accepted here, not started yet
        self._waiters: set[asyncio.Future[None]] = set()
        runs.on_slot_freed(self._start_waiting)
        if tracing.configure(settings.otlp_endpoint, settings.otel_service_name):
            _instrument_agents()

    # --- starting ---------------------------------------------------------------------------

    async def start(
        self,
        *,
        account_id: str,
        session_id: str | None,
        chat_id: str | None,
        user_message: dict[str, Any],
        model_id: str | None = None,
        headless: bool = False,
        new_session: NewSession | None = None,
    ) -> Accepted:
        """Accept a turn (409 if the chat has one live, 429 past the account's limits) and
        start it. With ``new_session`` instead of ``session_id`` the session is created in the
        same transaction, so that a refused turn leaves no session behind; the caller then
        starts its provisioning."""
        run_id = f"run-{nanoid()}"
        limits = self.settings

        def accept(db: Session) -> Accepted:
            quotas.lock_account(db, account_id)  # before any session row: one lock order
            default = models.default_model_for(db, self.settings, account_id)
            first_chat: Chat | None = None
            if new_session is not None:
                quotas.require_turn_room(db, account_id, limits.account_max_turns)
                quotas.require_sandbox_room(db, account_id, limits.account_max_live_sandboxes)
                session, first_chat = sessions.create_session(
                    db, account_id=account_id, new=replace(new_session, model_id=default)
                )
            else:
                assert session_id is not None, "a session id or a new session"
                session = sessions.get_owned(db, session_id, account_id, for_update=True)
                if session.status == "archived":
                    raise Conflict("Session is archived; unarchive it first")
                quotas.require_turn_room(db, account_id, limits.account_max_turns)
                if session.lifecycle_state not in quotas.LIVE_SANDBOX_STATES:
                    # The turn would resume the sandbox; the resume checks again, exactly.
                    quotas.require_sandbox_room(db, account_id, limits.account_max_live_sandboxes)
            if first_chat is not None and chat_id is None:
                chat = first_chat  # the new session's own first chat, not a second one
            else:
                chat = chat_store.create_chat(
                    db, account_id=account_id, session_id=session.id, chat_id=chat_id,
                    model_id=default,
                )  # fmt: skip
            model = (model_id or chat.model_id or default).strip()
            models.check_usable(self.settings, model)
            message_id = str(user_message["id"])
            if not store.claim_chat(db, chat.key, run_id):
                raise Conflict(LIVE_TURN)
            # A message the chat already has (regenerate, or a client resending after a lost
            # response): the conversation continues from it, so what followed it goes. Message
            # ids are the chat's own: the same id in another chat is another message (ADR 9).
            store.truncate_after(db, chat.key, message_id)
            store.upsert_message(
                db, chat=chat.key, message_id=message_id, role="user", message=user_message
            )
            if chat.title == chat_store.DEFAULT_TITLE:
                prompt = _text_of(user_message)
                if prompt:
                    chat.title = title_from_prompt(prompt)
            store.create_run(
                db, id=run_id, chat_id=chat.id, session_id=session.id, account_id=account_id,
                model_id=model, assistant_message_id=f"msg-{nanoid()}", headless=headless,
                executor_id=self.settings.executor_id,
            )  # fmt: skip
            return Accepted(run_id, chat.id, session.id, session_created=new_session is not None)

        accepted = await self.db.write_call(accept)
        logs.bind(session=accepted.session_id, chat=accepted.chat_id, run=run_id)
        fault_point("turn-accepted")
        await self._dispatch(account_id, run_id)
        return accepted

    async def _dispatch(self, account_id: str, run_id: str) -> None:
        """Start the turn in this process, at once if it has room (ADR 8).

        Without a global limit the process that accepted a turn runs it: at most
        ``agent_worker_concurrency`` at once, the rest wait here, round robin by account
        (:mod:`.waiting`). Waiting here is durable: the run is recorded ``queued``, and after a
        crash :meth:`reconcile` hands it to the queue. With a global limit every turn goes
        through the ``agent-turns`` queue, the only place that counts across processes, and
        any ``serve`` or ``worker`` runs it.

        Starting directly skips the queue's poll, which was on the way to the first chunk and
        made the queue poll every 50 ms: 10 % of a core on an idle server.
        """
        if self.settings.agent_global_concurrency is not None:
            await self._enqueue(account_id, run_id)
            return
        self._waiting.push(account_id, run_id)
        await self._start_waiting()

    async def _start_waiting(self) -> None:
        limit = self.settings.agent_worker_concurrency
        while self._waiting and len(runs.holding_slots()) < limit:
            run_id = self._waiting.pop()
            runs.started(run_id)
            try:
                with SetWorkflowID(run_id):
                    handle = await DBOS.start_workflow_async(turn.run_turn, run_id)
            except BaseException:
                runs.ended(run_id)
                self._waiting.done(run_id)
                raise
            self._watch(run_id, handle)

    def _watch(self, run_id: str, handle: WorkflowHandleAsync[str]) -> None:
        """Free the run's slot when its workflow ends, and start the next waiting turn."""

        async def release() -> None:
            try:
                with contextlib.suppress(Exception):
                    await handle.get_result()
            finally:
                runs.ended(run_id)
                self._waiting.done(run_id)
            try:
                await self._start_waiting()
            except Exception:
                _log.exception("could not start a waiting turn; it starts at the next restart")

        waiter = asyncio.ensure_future(release())
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)

    async def _enqueue(self, account_id: str, run_id: str) -> None:
        """Onto the queue, in the account's partition: with a global limit the queue takes
        waiting turns account by account (``runtime.register_turn_queue``)."""
        if self._queue is None:
            self._queue = await DBOS.retrieve_queue_async(TURN_QUEUE)
            assert self._queue is not None, "the turn queue is registered at start-up"
        with SetWorkflowID(run_id), SetEnqueueOptions(queue_partition_key=account_id):
            await self._queue.enqueue_async(turn.run_turn, run_id)

    def reconcile(self) -> None:
        """Enqueue turns that were accepted but never started (a crash in between); DBOS itself
        recovers the ones that started. Warm up the model providers' imports."""
        models.warm_up(self.settings)
        self._enqueue_unstarted(self.settings.executor_id, unrecorded=True)

    def adopt(self, lost_host: str, ended: list[str]) -> None:
        """After this process took over a silent host: the turns that ended with it keep, as
        their stored message, everything they streamed (the host stores a step's message as
        the step ends; a client may have seen more); the turns it accepted and never started
        go on the queue (with local sandboxes they were ended with the host instead)."""
        for run_id in ended:
            try:
                self._store_streamed(run_id)
            except Exception:
                _log.exception("could not store what the lost turn %s streamed", run_id)
        self._enqueue_unstarted(lost_host, unrecorded=False)

    def _store_streamed(self, run_id: str) -> None:
        with self.db.read() as s:
            run = store.get_run(s, run_id)
        if run is None:
            return
        chunks = [c for value in DBOS.read_stream(run_id, STREAM_KEY) for c in json.loads(value)]
        with self.db.write() as s:
            stored = store.message_of(s, run.chat_key, run.assistant_message_id)
            message = as_shown(chunks, stored, run.assistant_message_id, LOST_CALL)
            if not message.get("parts"):  # it showed nothing: no message to keep
                return
            store.upsert_message(
                s, chat=run.chat_key, message_id=run.assistant_message_id, role="assistant",
                message=message,
            )  # fmt: skip

    def _enqueue_unstarted(self, executor_id: str, *, unrecorded: bool) -> None:
        with self.db.read() as s:
            pending = store.unfinished_runs(s, executor_id, unrecorded=unrecorded)

        def enqueue_all() -> None:
            queue = DBOS.retrieve_queue(reconcile_queue(self.settings))
            assert queue is not None
            for run_id, account_id in pending:
                if DBOS.get_workflow_status(run_id) is not None:
                    continue
                with SetWorkflowID(run_id), SetEnqueueOptions(queue_partition_key=account_id):
                    queue.enqueue(turn.run_turn, run_id)

        if pending:
            off_loop(enqueue_all)
            _log.info("%d turns unfinished at start-up: DBOS resumes or starts them", len(pending))

    # --- streaming ----------------------------------------------------------------------------

    async def live_run(
        self, account_id: str, session_id: str, chat_id: str
    ) -> store.RunView | None:
        def find(db: Session) -> store.RunView | None:
            sessions.read_owned(db, session_id, account_id)
            chat = chat_store.get_chat(
                db, account_id=account_id, session_id=session_id, chat_id=chat_id
            )
            return store.live_run(db, chat.key)

        return await self.db.read_call(find)

    def chunks(self, run_id: str, start_index: int = 0) -> AsyncIterator[Chunk]:
        """The run's chunks from ``start_index`` to the end of its response
        (:class:`~.stream.StreamReader`)."""
        questions = RunQuestions(
            runs_here=lambda: self._runs_here(run_id),
            waits_for_approval=lambda asked: self._still_pending(
                run_id, lambda m: {p["approvalId"] for p in approvals.pending_approvals(m)} & asked
            ),
            waits_for_answer=lambda asked: self._still_pending(
                run_id, lambda m: {q["toolCallId"] for q in approvals.pending_questions(m)} & asked
            ),
            ended=lambda: self._ended(run_id),
        )
        return StreamReader(run_id, start_index, questions).chunks()

    async def _still_pending(
        self, run_id: str, waiting: Callable[[dict[str, Any] | None], set[Any]]
    ) -> bool:
        """Whether the live run's stored message still has something ``waiting`` picks out."""

        def check(db: Session) -> bool:
            run = store.get_run(db, run_id)
            if run is None or run.status in store.TERMINAL:
                return False
            return bool(waiting(store.message_of(db, run.chat_key, run.assistant_message_id)))

        return await self.db.read_call(check)

    async def _ended(self, run_id: str) -> bool:
        status = await self.db.query_call(lambda r: store.run_status(r, run_id))
        return status is None or status in store.TERMINAL

    def _runs_here(self, run_id: str) -> bool:
        """Whether this process runs the turn, or will: its writes wake this process's readers."""
        return runs.here(run_id) or run_id in self._waiting

    async def stream_length(self, run_id: str) -> int:
        return await stream.stream_length(run_id)

    async def tail_index(self, run_id: str) -> int:
        return await stream.tail_index(run_id)

    async def continuation(self, run: store.RunView, start_index: int) -> AsyncIterator[Chunk]:
        """The stream from ``start_index`` under its own ``start`` chunk (a client continuing
        the assistant message after a tool result)."""
        yield {"type": "start", "messageId": run.assistant_message_id}
        async for chunk in self.chunks(run.id, start_index):
            yield chunk

    # --- stopping and answering -------------------------------------------------------------

    async def stop(self, account_id: str, session_id: str, chat_id: str) -> bool:
        run = await self.live_run(account_id, session_id, chat_id)
        if run is None:
            return False
        stopped = await self.db.write_call(lambda s: store.request_stop(s, run.id))
        runs.signal_stop(run.id)
        if stopped:  # wait briefly so that the caller sees the turn ended
            await self._wait_done(run.id, timeout=10.0)
        return stopped

    async def _wait_done(self, run_id: str, timeout: float) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            run = await self.db.read_call(lambda s: store.get_run(s, run_id))
            if run is None or run.status in store.TERMINAL:
                return
            await asyncio.sleep(0.05)

    async def answer(self, run_id: str, tool_call_id: str, output: Any) -> None:
        """Deliver a client tool's result (``ask_user_question``) or a person's decision on a
        call's approval (``{approved, reason}``) to the waiting turn."""
        await DBOS.send_async(run_id, output, approvals.answer_topic(tool_call_id))

    async def waiting(self, run: store.RunView) -> list[dict[str, Any]]:
        """The run's calls waiting for approval (from its stored message)."""
        message = await self.db.read_call(
            lambda db: store.message_of(db, run.chat_key, run.assistant_message_id)
        )
        return approvals.pending_approvals(message)

    # --- runs -------------------------------------------------------------------------------

    async def get_run(self, account_id: str, run_id: str) -> store.RunView:
        return (await self.run_with_reply(account_id, run_id))[0]

    async def run_with_reply(
        self, account_id: str, run_id: str
    ) -> tuple[store.RunView, str | None]:
        """The run and its reply text, for its account or one that may act for it (a fellow
        organization member, who may have started it with ``accountId``)."""

        def get(db: Session) -> tuple[store.RunView, str | None]:
            run = store.get_run(db, run_id) if "\x00" not in run_id else None
            if run is None:
                raise NotFound("Run not found")
            if not accounts.may_act_for(db, account_id=account_id, target_id=run.account_id):
                sessions.read_owned(db, run.session_id, account_id)  # 403 (or 404)
            return run, store.run_reply(db, run)

        return await self.db.read_call(get)

    async def list_runs(
        self, account_id: str, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[tuple[store.RunView, str | None]], bool]:
        return await self.db.read_call(
            lambda db: store.list_runs(
                db, account_id=account_id, status=status, limit=limit, offset=offset
            )
        )

    async def acting_account(
        self, account_id: str, *, for_account: str | None, organization_id: str | None
    ) -> str:
        """The account a headless run is for: the caller's, or ``for_account`` when the caller
        may act for it (a fellow member of ``organization_id``, or of any shared organization
        without one); 403 otherwise. With ``organization_id`` that account must be a member."""
        target = for_account or account_id
        if target == account_id and organization_id is None:
            return account_id

        def check(db: Session) -> str:
            if "\x00" in target or not accounts.may_act_for(
                db, account_id=account_id, target_id=target, organization_id=organization_id
            ):
                raise Forbidden("You may not act for this account")
            if organization_id is not None and not accounts.is_member(
                db, organization_id=organization_id, account_id=target
            ):
                raise Forbidden("You are not a member of this organization")
            return target

        return await self.db.read_call(check)


def _text_of(message: dict[str, Any]) -> str:
    parts = message.get("parts") or []
    return " ".join(
        p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"
    ).strip()


def user_message_from_prompt(prompt: str) -> dict[str, Any]:
    return {"id": f"msg-{nanoid()}", "role": "user", "parts": [{"type": "text", "text": prompt}]}


def validate_user_message(raw: Any, max_attachment_bytes: int) -> dict[str, Any]:
    """The new message of a request, rebuilt from what a user message may carry
    (:mod:`.user_parts`): at least one non-empty text part, files as ``data:`` URLs."""
    if not isinstance(raw, dict) or raw.get("role") != "user":
        raise InvalidInput("The last message must be a user message")
    message_id = str(raw.get("id") or f"msg-{nanoid()}")
    parts = user_parts.new_message_parts(raw.get("parts"), max_attachment_bytes)
    message = {"id": message_id, "role": "user", "parts": parts}
    if not _text_of(message):
        raise InvalidInput("The user message has no text")
    if len(message_id) > MAX_MESSAGE_ID:
        raise InvalidInput("Invalid message id")
    if any("\x00" in s for s in (message_id, *_strings(parts))):
        raise InvalidInput("The message contains a NUL character")
    return message


def _strings(parts: list[dict[str, Any]]) -> list[str]:
    return [v for part in parts for v in part.values() if isinstance(v, str)]
