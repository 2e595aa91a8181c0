"""A run's stream: the AI SDK UI message chunks of a turn, written to its DBOS stream and read
back by any number of clients, here or in another process.

The turn writes (:func:`write_chunks`, one value per batch of chunks, committed together with
the other turns' writes: ADR 16); its first execution also keeps the values in memory
(:class:`RunLog`) and wakes this process's readers (:class:`Written`), so that a reader of a
turn running here reads nothing from the database. :class:`StreamReader` is one client's read,
from a chunk index to the end of the turn's response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from dbos import DBOS
from dbos import error as dbos_error

from agent_sessions.agent import group_commit

STREAM_KEY = "ui"
Chunk = dict[str, Any]


class StreamTail:
    """What a crashed attempt left open at the end of the stream, read back on recovery.

    Chunks are written as they happen, so a process killed mid-step leaves a step, a text part
    or a streaming tool input open; the recovered turn closes them before it goes on, keeping
    the stream valid for clients that read it from chunk 0.
    """

    def __init__(self) -> None:
        self.step_open = False
        self.open_parts: dict[str, str] = {}
        self.streaming_tools: dict[str, str] = {}
        self.outputs: set[str] = set()

    def feed(self, chunk: Chunk) -> None:
        kind = chunk["type"]
        if kind == "start-step":
            self.step_open = True
        elif kind == "finish-step":
            self.step_open = False
        elif kind in ("text-start", "reasoning-start"):
            self.open_parts[chunk["id"]] = kind.split("-")[0]
        elif kind in ("text-end", "reasoning-end"):
            self.open_parts.pop(chunk["id"], None)
        elif kind == "tool-input-start":
            self.streaming_tools[chunk["toolCallId"]] = chunk.get("toolName", "unknown")
        elif kind.startswith(("tool-input-available", "tool-input-error", "tool-output")):
            self.streaming_tools.pop(chunk.get("toolCallId", ""), None)
            if kind.startswith("tool-output") and not chunk.get("preliminary"):
                self.outputs.add(chunk["toolCallId"])

    def closing_chunks(self) -> list[Chunk]:
        out: list[Chunk] = [{"type": f"{t}-end", "id": i} for i, t in self.open_parts.items()]
        for call_id, name in self.streaming_tools.items():
            out.append({
                "type": "tool-input-error", "toolCallId": call_id, "toolName": name, "input": None,
                "errorText": "Interrupted by a restart of the server; the step was run again.",
            })  # fmt: skip
        return out


async def read_tail(run_id: str) -> StreamTail:
    """Read this run's stream as far as it goes (on recovery only: it waits briefly at the end)."""
    tail = StreamTail()
    try:
        async for chunks in read_chunks(run_id, wait_at_most=0.2):
            for chunk in chunks:
                tail.feed(chunk)
    except dbos_error.DBOSStreamTimeoutError:  # timed out at its current end: the tail
        pass
    return tail


async def write_chunks(chunks: list[Chunk]) -> None:
    """One stream value holds the chunks written together (each value is a database write)."""
    if not chunks:
        return
    value = json.dumps(chunks, separators=(",", ":"))
    run_id = DBOS.workflow_id or ""
    log = written.log(run_id)
    if log is None:
        await group_commit.write(STREAM_KEY, value)
    else:
        async with log.writing:  # appended in the order of the commits
            try:
                await group_commit.write(STREAM_KEY, value)
            except BaseException:
                log.give_up()  # it may have been written all the same
                raise
            log.add(value)
    written.notify(run_id)


class RunLog:
    """The stream's values, in memory, as written by the one process that writes all of them.

    A turn's first execution writes every value of its stream, in order, so its log holds what
    the database holds, value for value: a reader in the same process follows the log and reads
    nothing from the database (DBOS's read is five thread hops and a query per value). A
    recovered turn keeps no log (the values of its crashed attempt are not in it, and DBOS skips
    replayed writes), and a log that may have missed a value stops being used: readers then go
    on from the database at the value they reached.
    """

    MAX_BYTES = 16 * 2**20
    """Beyond this a turn's readers use the database (a long turn, or one waiting for days on
    its user, does not keep its whole stream in memory); all logs together: see Written."""

    def __init__(self, budget: Budget) -> None:
        self.values: list[str] = []
        self.usable = True
        self.ended = False
        self.writing = asyncio.Lock()
        self._budget = budget
        self._size = 0

    def add(self, value: str) -> None:
        if not self.usable:
            return
        if self._size + len(value) > self.MAX_BYTES or not self._budget.take(len(value)):
            self.give_up()
            return
        self._size += len(value)
        self.values.append(value)

    def end(self) -> None:
        """The turn is over: readers still on it finish from it; new ones use the database."""
        self.ended = True
        self._budget.give(self._size)
        self._size = 0

    def give_up(self) -> None:
        """Readers go to the database from here on; the memory goes back to the budget."""
        self.usable = False
        self.values = []  # a reader holding the old list keeps values that were all right
        self._budget.give(self._size)
        self._size = 0


class Budget:
    """Bytes that all of a process's stream logs may hold together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class Wake:
    """One reader's wake-up: set by every write to its run's stream, counting the writes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self._writes = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._writes += 1

    def take(self) -> int:
        """The writes since the last call (the event is cleared with them: read after this)."""
        with self._lock:
            writes, self._writes = self._writes, 0
            self.event.clear()
        return writes

    async def wait(self) -> None:
        await self.event.wait()


class Written:
    """In-process wake-ups for readers of a stream this process writes.

    DBOS's stream reader on SQLite polls: every reader re-read the database every 10 ms through
    several thread hops, and DBOS's listener thread checked every open stream every 50 ms. With
    20 turns streaming at once that was a third of the server's CPU (``bench/agent.py``). A
    reader of a turn running here waits for this signal instead, then reads what is new: from
    the turn's :class:`RunLog` if it keeps one, else from the database, as many values as were
    written since it last looked (not once more to find the end: each read of DBOS's is
    several thread hops and a query).
    """

    MAX_LOGGED_BYTES = 128 * 2**20
    """What all logs of this process may hold together (beyond it, new values are not logged)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Wake]] = {}
        self._logs: dict[str, RunLog] = {}
        self.budget = Budget(self.MAX_LOGGED_BYTES)

    @contextlib.contextmanager
    def logging(self, run_id: str) -> Iterator[RunLog]:
        """Keep the run's values in memory while its turn runs (its first execution only)."""
        log = RunLog(self.budget)
        self._logs[run_id] = log
        try:
            yield log
        finally:
            self._logs.pop(run_id, None)
            log.end()
            self.notify(run_id)

    def log(self, run_id: str) -> RunLog | None:
        return self._logs.get(run_id)

    @contextlib.contextmanager
    def listen(self, run_id: str) -> Iterator[Wake]:
        """A wake-up for each write to the run's stream from now on."""
        wake = Wake(asyncio.get_running_loop())
        with self._lock:
            self._listeners.setdefault(run_id, set()).add(wake)
        try:
            yield wake
        finally:
            with self._lock:
                listeners = self._listeners.get(run_id, set())
                listeners.discard(wake)
                if not listeners:
                    self._listeners.pop(run_id, None)

    def notify(self, run_id: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(run_id, ()))
        if not listeners:
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for wake in listeners:
            wake.add()
            if wake.loop is here:
                wake.event.set()
            else:
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    wake.loop.call_soon_threadsafe(wake.event.set)


written = Written()


async def read_chunks(
    run_id: str, *, from_value: int = 0, poll: float = 0.01, wait_at_most: float | None = None
) -> AsyncGenerator[list[Chunk], None]:
    """The run's stream values (lists of chunks) from value ``from_value`` on; with
    ``wait_at_most``, DBOS raises ``DBOSStreamTimeoutError`` after that long without a value.

    A run still waiting for a slot has no workflow yet: its stream is empty so far.
    """
    values = DBOS.read_stream_async(
        run_id, STREAM_KEY, offset=from_value, polling_interval_sec=poll,
        timeout_seconds=wait_at_most,
    )  # fmt: skip
    try:
        async with contextlib.aclosing(values):
            async for value in values:
                chunks: list[Chunk] = json.loads(value)
                yield chunks
    except dbos_error.DBOSNonExistentWorkflowError:
        return


STREAM_POLL_SECONDS = 0.05
"""DBOS's poll of a stream written by another process, on SQLite (PostgreSQL notifies)."""
WAKE_AT_MOST_SECONDS = 1.0
"""A reader of a turn running here re-reads at least this often, should a wake-up be missed."""
ELSEWHERE_READ_SECONDS = 0.5
"""How long DBOS's read of a turn running elsewhere may wait for a value before the reader looks
again where the turn runs (a queued turn may start in this process)."""
REREAD_SECONDS = 0.05
END_GRACE_SECONDS = 1.0
PAUSED: Chunk = {"type": "finish", "finishReason": "tool-calls"}
"""Ends a response where the turn waits for a person (the turn itself goes on)."""


class RunQuestions:
    """What a reader asks about the run beyond its stream (the service answers from the
    database)."""

    def __init__(
        self,
        *,
        runs_here: Callable[[], bool],
        waits_for_approval: Callable[[set[str]], Awaitable[bool]],
        waits_for_answer: Callable[[set[str]], Awaitable[bool]],
        ended: Callable[[], Awaitable[bool]],
    ) -> None:
        self.runs_here = runs_here
        """Whether this process runs the turn, or will: its writes wake this process's readers."""
        self.waits_for_approval = waits_for_approval
        """Whether any of these approval requests is still unanswered."""
        self.waits_for_answer = waits_for_answer
        """Whether any of these questions (``ask_user_question`` calls) still waits."""
        self.ended = ended
        """Whether the run has ended (or is gone)."""


class StreamReader:
    """One client's read of a run's stream, from chunk ``start_index`` to the end of the
    response: the ``finish`` chunk, or a wait for a person.

    Reading never affects the run: a client that goes away only stops its own reader. A run
    that this process runs (or will) wakes its readers at each write (``written``); they then
    read what is new, from the turn's log in memory while it has one (its first execution),
    else from the database. A run elsewhere is followed by DBOS's own read, which polls on
    SQLite and is notified on PostgreSQL. DBOS ends a read when the stream has no new value and
    the workflow does not look active; that check can race with a run that is still going
    (seen under load), so the read is resumed until the ``finish`` chunk arrives or the run
    says it ended.

    A response ends where the turn waits for a person (approvals, ``ask_user_question``), so
    that the AI SDK client, no longer streaming, can send the answers (ADR 14).
    """

    def __init__(self, run_id: str, start_index: int, questions: RunQuestions) -> None:
        self.run_id = run_id
        self.start_index = start_index
        self._ask = questions
        self.index = 0
        """Chunks passed so far (sent, or skipped before ``start_index``)."""
        self.values = 0
        """Stream values read so far (each holds the chunks written together)."""
        self.asked: set[str] = set()
        """Questions announced in the stream and not answered in it yet."""
        self.finished = False
        self._to_end = True
        """The next database read goes to the stream's end (not only the values counted as
        written since the last one)."""
        self._ended_at: float | None = None
        self._caught_up = False

    async def chunks(self) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        with written.listen(self.run_id) as wake:
            while True:
                here = self._ask.runs_here()
                owed = wake.take()
                log = written.log(self.run_id)
                if log is not None and log.usable:  # the turn's first execution, here
                    async for chunk in self._from_log(log):
                        yield chunk
                    if self.finished:
                        return
                    if log.usable and not log.ended:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), WAKE_AT_MOST_SECONDS)
                        continue
                    # given up, or over without a finish chunk: the database from here
                async for chunk in self._from_database(here, owed):
                    yield chunk
                if self.finished:
                    return
                caught_up = self._caught_up
                self._to_end = not caught_up
                if await self._waits_for_answer():
                    yield PAUSED
                    return
                if not caught_up and await self._ask.ended():
                    # Ended without a finish chunk (it crashed in its last step): drain, then stop.
                    self._ended_at = self._ended_at or loop.time()
                    if loop.time() - self._ended_at > END_GRACE_SECONDS:
                        return
                wait = WAKE_AT_MOST_SECONDS if here and self._ended_at is None else REREAD_SECONDS
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)

    async def _from_log(self, log: RunLog) -> AsyncIterator[Chunk]:
        for value in log.values[self.values :]:
            self.values += 1
            async for chunk in self._read(json.loads(value)):
                yield chunk
            if self.finished:
                return
        self._to_end = True  # if the database is read next, it is read to its end
        if await self._waits_for_answer():
            yield self._pause()

    async def _from_database(self, here: bool, owed: int) -> AsyncIterator[Chunk]:
        """What is new in the database; ``_caught_up`` says whether everything written so far
        was read (the run goes on)."""
        self._caught_up = False
        # After a read to the end, each later write of this process was counted.
        left = owed if here and owed and not self._to_end else None
        reads = read_chunks(
            self.run_id, from_value=self.values, poll=STREAM_POLL_SECONDS,
            wait_at_most=0 if here else ELSEWHERE_READ_SECONDS,
        )  # fmt: skip
        try:
            async with contextlib.aclosing(reads):
                async for batch in reads:
                    self.values += 1
                    async for chunk in self._read(batch):
                        yield chunk
                    if self.finished:
                        return
                    if left is not None and (left := left - 1) == 0:
                        self._caught_up = True
                        return
        except dbos_error.DBOSStreamTimeoutError:
            self._caught_up = True

    async def _read(self, batch: list[Chunk]) -> AsyncIterator[Chunk]:
        """One stream value's chunks to send; a ``finish`` chunk, or approvals asked and still
        unanswered, end the read."""
        for chunk in self._take(batch):
            yield chunk
        if not self.finished and await self._waits_for_approval(batch):
            yield self._pause()

    def _take(self, batch: list[Chunk]) -> list[Chunk]:
        """The chunks of ``batch`` to send; a ``finish`` chunk ends the read."""
        out: list[Chunk] = []
        for chunk in batch:
            if self.index >= self.start_index:
                out.append(chunk)
            self.index += 1
            _track_questions(self.asked, chunk)
            if chunk.get("type") == "finish":
                self.finished = True
                break
        return out

    def _pause(self) -> Chunk:
        self.finished = True
        return PAUSED

    async def _waits_for_approval(self, batch: list[Chunk]) -> bool:
        """Whether ``batch`` asked for approvals that are still unanswered (nothing is asked of
        the database for a batch that asked none)."""
        if self.index <= self.start_index:
            return False
        asked = {c["approvalId"] for c in batch if c.get("type") == "tool-approval-request"}
        return bool(asked) and await self._ask.waits_for_approval(asked)

    async def _waits_for_answer(self) -> bool:
        """Whether questions the reader saw announced still wait for the user. Checked once the
        reader has caught up with what is written: the question's announcement may be written
        before the message that holds it is stored."""
        if self.index <= self.start_index or not self.asked:
            return False
        return await self._ask.waits_for_answer(self.asked)


def _track_questions(asked: set[str], chunk: Chunk) -> None:
    """Keep ``asked`` to the ``ask_user_question`` calls announced and not yet answered."""
    kind, call_id = chunk.get("type"), chunk.get("toolCallId")
    if not isinstance(call_id, str):
        return
    if kind == "tool-input-available" and chunk.get("toolName") == "ask_user_question":
        asked.add(call_id)
    elif kind in ("tool-output-available", "tool-output-error", "tool-output-denied"):
        asked.discard(call_id)


async def stream_length(run_id: str) -> int:
    """Chunks the run's stream holds now (reads to its current end; waits briefly there)."""
    count = 0
    with contextlib.suppress(dbos_error.DBOSStreamTimeoutError):
        async for batch in read_chunks(run_id, wait_at_most=0.05):
            count += len(batch)
    return count


async def tail_index(run_id: str) -> int:
    """The index of the last chunk written so far (-1: none yet), as Vercel Workflow's
    ``x-workflow-stream-tail-index`` gives it: from the turn's log in memory when this process
    runs it, else counted in the database. A snapshot: the stream goes on."""
    log = written.log(run_id)
    if log is not None and log.usable:
        return sum(len(json.loads(value)) for value in list(log.values)) - 1
    return await stream_length(run_id) - 1
