"""API calls and the UI message stream reader, with resume after a dropped connection.

A turn runs on the server whether or not anyone is reading it, and its chunks are numbered, so a
dropped connection loses nothing: the reader counts the chunks it got and asks
``GET /api/chat/{chatId}/stream?startIndex=<count>`` for the rest.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import httpx

Chunk = dict[str, Any]

STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)
"""A turn may be silent for minutes (a long ``bash``), so a stream read never times out."""
RESUME_ATTEMPTS = 5


class ApiError(Exception):
    """An HTTP error answer; ``message`` is the ``error`` field of the error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class StreamDropped(Exception):
    """The SSE body ended before ``data: [DONE]``: the connection was cut mid-turn."""


def parse_sse(lines: Iterable[str]) -> Iterator[Chunk]:
    """SSE lines → chunks, until ``data: [DONE]``; raises :class:`StreamDropped` when the lines
    run out first. An event cut off mid-way is dropped, so only whole chunks are counted."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                body = "\n".join(data)
                data = []
                if body == "[DONE]":
                    return
                yield _decode(body)
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        # comments (":…") and other fields (event:, id:, retry:) carry nothing we use
    raise StreamDropped("the stream ended without [DONE]")


def _decode(body: str) -> Chunk:
    try:
        chunk = json.loads(body)
    except ValueError:
        return {"type": "error", "errorText": f"unreadable chunk from the server: {body[:200]}"}
    if not isinstance(chunk, dict):
        return {"type": "error", "errorText": f"unexpected chunk from the server: {body[:200]}"}
    return chunk


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    try:
        body = response.json()
        message = body["error"] if isinstance(body, dict) and "error" in body else response.text
    except ValueError:
        message = response.text or response.reason_phrase
    raise ApiError(response.status_code, str(message).strip() or response.reason_phrase)


def user_message(text: str) -> Chunk:
    return {"id": str(uuid.uuid4()), "role": "user", "parts": [{"type": "text", "text": text}]}


class Api:
    """The handful of endpoints the terminal client needs, authenticated with an API key."""

    def __init__(
        self, base_url: str, api_key: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"x-api-key": api_key},
            timeout=httpx.Timeout(30.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for_status(response)
        return response.json()

    def create_session(self) -> Chunk:
        """``{"session": …, "chat": …}``: a new session and its first chat."""
        created: Chunk = self._json("POST", "/api/sessions", json={})
        return created

    def get_session(self, session_id: str) -> Chunk:
        session: Chunk = self._json("GET", f"/api/sessions/{session_id}")["session"]
        return session

    def list_chats(self, session_id: str) -> list[Chunk]:
        chats: list[Chunk] = self._json("GET", f"/api/sessions/{session_id}/chats")["chats"]
        return chats

    def sandbox(self, session_id: str) -> Chunk:
        state: Chunk = self._json("GET", f"/api/sessions/{session_id}/sandbox")
        return state

    def stop(self, chat_id: str) -> bool:
        return bool(self._json("POST", f"/api/chat/{chat_id}/stop").get("stopped"))

    def answer(
        self,
        session_id: str,
        chat_id: str,
        call: Chunk,
        output: Chunk,
        start_index: int,
        *,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> Generator[Chunk, None, None]:
        """Answer the agent's ``ask_user_question`` and yield the rest of the turn from chunk
        ``start_index`` (under a fresh ``start``): the response that asked ends at the question
        (``finish``, reason ``tool-calls``) while the turn waits, as the AI SDK client expects."""
        part = {
            "type": "tool-ask_user_question",
            "toolCallId": call["toolCallId"],
            "state": "output-available",
            "input": call.get("input"),
            "output": output,
        }
        message = {"id": str(uuid.uuid4()), "role": "assistant", "parts": [part]}
        body = {
            "id": chat_id,
            "sessionId": session_id,
            "trigger": "submit-tool-result",
            "messages": [message],
            "startIndex": start_index,
        }
        request = self._http.build_request("POST", "/api/chat", json=body, timeout=STREAM_TIMEOUT)
        response = self._http.send(request, stream=True)
        try:
            _raise_for_status(response)
        except BaseException:
            response.close()
            raise
        # Its leading ``start`` is no chunk of the run's stream: a resume counts from one less.
        return self._follow(chat_id, response, start_index - 1, on_retry)

    # --- streams -------------------------------------------------------------------------------

    def send(
        self,
        session_id: str,
        chat_id: str,
        text: str,
        model: str | None = None,
        *,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> Generator[Chunk, None, None]:
        """Send a user message and yield the turn's chunks, resuming if the connection drops.

        The request itself is made before the first chunk is asked for: :class:`ApiError` (409
        when a turn is already live) is raised by this call, not by iteration.
        """
        body: Chunk = {
            "id": chat_id,
            "sessionId": session_id,
            "messages": [user_message(text)],
            "trigger": "submit-message",
        }
        if model:
            body["model"] = model
        request = self._http.build_request("POST", "/api/chat", json=body, timeout=STREAM_TIMEOUT)
        response = self._http.send(request, stream=True)
        try:
            _raise_for_status(response)
        except BaseException:
            response.close()
            raise
        return self._follow(chat_id, response, 0, on_retry)

    def attach(
        self,
        chat_id: str,
        start_index: int = 0,
        *,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> Generator[Chunk, None, None] | None:
        """The live turn's chunks from ``start_index``; None when no turn is live (204)."""
        response = self._open_resume(chat_id, start_index)
        if response is None:
            return None
        return self._follow(chat_id, response, start_index, on_retry)

    def _open_resume(self, chat_id: str, start_index: int) -> httpx.Response | None:
        request = self._http.build_request(
            "GET",
            f"/api/chat/{chat_id}/stream",
            params={"startIndex": start_index},
            timeout=STREAM_TIMEOUT,
        )
        response = self._http.send(request, stream=True)
        if response.status_code == 204:
            response.close()
            return None
        try:
            _raise_for_status(response)
        except BaseException:
            response.close()
            raise
        return response

    def _follow(
        self,
        chat_id: str,
        response: httpx.Response,
        received: int,
        on_retry: Callable[[int, str], None] | None,
    ) -> Generator[Chunk, None, None]:
        """Yield chunks from ``response``; on a drop, reopen from the count received so far.

        Consecutive failed reconnects are bounded; any chunk received resets the count. A
        stream that ends without a ``finish`` chunk is resumed as well (204 then means done).
        """
        failures = 0
        finished = False
        current: httpx.Response | None = response
        while current is not None:
            try:
                for chunk in parse_sse(current.iter_lines()):
                    received += 1
                    failures = 0
                    finished = finished or chunk.get("type") == "finish"
                    yield chunk
                if finished:
                    return
                # [DONE] before the turn's finish chunk: the server stopped reading early (seen
                # once under load); the chat still names its live stream if the turn goes on.
                reason = "the stream ended before the turn finished"
            except (httpx.TransportError, StreamDropped) as err:
                reason = str(err) or type(err).__name__
            finally:
                current.close()
            current = None
            while current is None:
                failures += 1
                if failures > RESUME_ATTEMPTS:
                    raise StreamDropped(f"lost the stream and could not resume: {reason}")
                if on_retry is not None:
                    on_retry(failures, reason)
                time.sleep(min(0.25 * 2**failures, 4.0))
                try:
                    current = self._open_resume(chat_id, received)
                except httpx.TransportError as err:
                    reason = str(err) or type(err).__name__
                    continue
                if current is None:  # 204: the turn ended while we were away
                    return
