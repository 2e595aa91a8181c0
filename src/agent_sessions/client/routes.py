"""Every route of the HTTP API, described once for the sync and the async client.

Each method of :class:`Routes` says what its route sends (path, query, body) and how to read
the answer, and returns that description (a :class:`Call`); its decorator names the route
(method and path, as ``/openapi.json`` has them) and sends the description through the client
it is read from: ``Client().get_session(sid)`` returns a ``Session``,
``AsyncClient().get_session(sid)`` a coroutine of one.

Answers are read with the server's own models (``agent_sessions.api.schemas``); the envelopes
of a single object (``{"session": …}``, ``{"chat": …}``) are unwrapped, and ``{"success": true}``
or an empty answer is None. Bodies are given as the server's input model, a mapping, or
keyword arguments (snake_case or camelCase: the server takes both), and validated by the
server: an invalid one is a :class:`~.errors.BadRequestError` naming the field.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Self,
    TypeVar,
    overload,
)
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from agent_sessions.api import schemas
from agent_sessions.client._http import AsyncTransport, Request, StreamStart, SyncTransport
from agent_sessions.client.chunks import ToolInputAvailableChunk

if TYPE_CHECKING:
    from agent_sessions.client.streams import AsyncTurnStream, TurnStream

__all__ = ["Call", "Routes", "StreamCall", "user_message"]

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Body = BaseModel | Mapping[str, Any] | None
"""A request body: the server's input model (``schemas.SessionCreate(…)``), or a mapping."""

SAFE_METHODS = frozenset({"GET", "PUT", "DELETE", "PATCH"})
"""Methods whose routes may be sent twice (on a 502/503); a ``POST`` says so itself."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """What a route method describes: its path parameters, query and body, how to read the
    answer, and whether sending it twice is safe (None: as its method says)."""

    parse: Callable[[httpx.Response], T]
    path: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    safe: bool | None = None


@dataclass(frozen=True)
class StreamCall:
    """A request answered by a turn's stream, which starts at ``index`` in the run's stream."""

    chat_id: str
    path: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None
    json: Any = None
    index: int = 0
    uncounted: int = 0


class _Route:
    """A route's method and path template, and the function that describes a call of it."""

    def __init__(
        self, method: str, template: str, safe: bool | None, describe: Callable[..., Any]
    ) -> None:
        self.method = method
        self.template = template
        self.safe = method in SAFE_METHODS if safe is None else safe
        self._describe = describe
        self.__name__: str = describe.__name__
        self.__qualname__: str = describe.__qualname__
        self.__doc__ = describe.__doc__
        signature = inspect.signature(describe)
        self.__signature__ = signature.replace(
            parameters=list(signature.parameters.values())[1:],
            return_annotation=inspect.Signature.empty,  # what the client returns is its parse's
        )

    def request(self, call: Call[Any] | StreamCall) -> Request:
        path = self.template.format(**{k: quote(v, safe="") for k, v in call.path.items()})
        safe = call.safe if isinstance(call, Call) and call.safe is not None else self.safe
        content = call.content if isinstance(call, Call) else None
        return Request(self.method, path, call.params, call.json, content, safe)

    def _named(self, method: Callable[..., Any]) -> Callable[..., Any]:
        method.__name__ = self.__name__
        method.__qualname__ = self.__qualname__
        method.__doc__ = self.__doc__
        method.__signature__ = self.__signature__  # type: ignore[attr-defined]
        return method


class _Endpoint(_Route, Generic[P, T]):
    """A route answered with JSON (or bytes, or nothing)."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: SyncTransport, owner: type[Any] | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: AsyncTransport, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        describe = self._describe
        if isinstance(obj, AsyncTransport):
            client = obj

            async def send_async(*args: Any, **kwargs: Any) -> Any:
                call = describe(client, *args, **kwargs)
                return await client._call(self.request(call), call.parse)

            return self._named(send_async)
        if isinstance(obj, SyncTransport):
            sync_client = obj

            def send(*args: Any, **kwargs: Any) -> Any:
                call = describe(sync_client, *args, **kwargs)
                return sync_client._call(self.request(call), call.parse)

            return self._named(send)
        return self


class _Streamed(_Route):
    """A route answered by a turn's stream (:class:`~.TurnStream`), or by 204 (None)."""

    def _start(self, call: StreamCall) -> StreamStart:
        def reopen(index: int) -> Request:
            resume = Routes.resume_stream
            return resume.request(resume._describe(None, call.chat_id, index))

        return StreamStart(call.chat_id, call.index, reopen, call.uncounted)

    def _bind(self, obj: object) -> Any:
        describe = self._describe
        if isinstance(obj, AsyncTransport):
            client = obj

            async def open_async(*args: Any, **kwargs: Any) -> Any:
                call = describe(client, *args, **kwargs)
                return await client._stream(self.request(call), self._start(call))

            return self._named(open_async)
        if isinstance(obj, SyncTransport):
            sync_client = obj

            def open_(*args: Any, **kwargs: Any) -> Any:
                call = describe(sync_client, *args, **kwargs)
                return sync_client._stream(self.request(call), self._start(call))

            return self._named(open_)
        return self


class _Stream(_Streamed, Generic[P]):
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self, obj: SyncTransport, owner: type[Any] | None = None
    ) -> Callable[P, TurnStream]: ...
    @overload
    def __get__(
        self, obj: AsyncTransport, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, AsyncTurnStream]]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        return self._bind(obj)


class _LiveStream(_Streamed, Generic[P]):
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self, obj: SyncTransport, owner: type[Any] | None = None
    ) -> Callable[P, TurnStream | None]: ...
    @overload
    def __get__(
        self, obj: AsyncTransport, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, AsyncTurnStream | None]]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        return self._bind(obj)


def endpoint(
    method: str, template: str, *, safe: bool | None = None
) -> Callable[[Callable[Concatenate[Any, P], Call[T]]], _Endpoint[P, T]]:
    def wrap(describe: Callable[Concatenate[Any, P], Call[T]]) -> _Endpoint[P, T]:
        return _Endpoint(method, template, safe, describe)

    return wrap


def stream(
    method: str, template: str
) -> Callable[[Callable[Concatenate[Any, P], StreamCall]], _Stream[P]]:
    def wrap(describe: Callable[Concatenate[Any, P], StreamCall]) -> _Stream[P]:
        return _Stream(method, template, False, describe)

    return wrap


def live_stream(
    method: str, template: str
) -> Callable[[Callable[Concatenate[Any, P], StreamCall]], _LiveStream[P]]:
    def wrap(describe: Callable[Concatenate[Any, P], StreamCall]) -> _LiveStream[P]:
        return _LiveStream(method, template, True, describe)

    return wrap


# --- reading answers, writing bodies --------------------------------------------------------------


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _session(response: httpx.Response) -> schemas.Session:
    return schemas.SessionResponse.model_validate_json(response.content).session


def _chat(response: httpx.Response) -> schemas.Chat:
    return schemas.ChatResponse.model_validate_json(response.content).chat


def _none(response: httpx.Response) -> None:
    return None


def _bytes(response: httpx.Response) -> bytes:
    return response.content


def _body(body: Body, fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON body: ``body`` (a model as it would be sent: by alias, only the fields set)
    updated with ``fields``; None when empty (the routes take a missing body as ``{}``)."""
    if isinstance(body, BaseModel):
        out = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    else:
        out = dict(body or {})
    out.update(to_jsonable_python(dict(fields), by_alias=True))
    return out or None


def _query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def user_message(text: str, message_id: str | None = None) -> dict[str, Any]:
    """A user message of one text part, as the AI SDK sends it (a new id unless given)."""
    return {
        "id": message_id or str(uuid.uuid4()),
        "role": "user",
        "parts": [{"type": "text", "text": text}],
    }


def _tool_result(
    session_id: str, chat_id: str, message: Mapping[str, Any], start_index: int
) -> StreamCall:
    """The assistant message posted back into the live turn (``submit-tool-result``); the
    answer opens with a ``start`` of its own, then the run's chunks from ``start_index``."""
    body = {
        "id": chat_id,
        "sessionId": session_id,
        "trigger": "submit-tool-result",
        "messages": [dict(message)],
        "startIndex": start_index,
    }
    return StreamCall(chat_id, json=body, index=start_index, uncounted=1)


def _assistant(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "role": "assistant", "parts": parts}


STREAM_PATH = "/api/chat/{chatId}/stream"


class Routes:
    """The API's routes, as methods of :class:`~.Client` and :class:`~.AsyncClient`."""

    # --- health ---------------------------------------------------------------------------------

    @endpoint("GET", "/healthz")
    def health(self) -> Call[schemas.Health]:
        """The server is up (no API key needed)."""
        return Call(_model(schemas.Health))

    # --- sessions -------------------------------------------------------------------------------

    @endpoint("POST", "/api/sessions")
    def create_session(
        self, /, body: schemas.SessionCreate | Mapping[str, Any] | None = None, **fields: Any
    ) -> Call[schemas.SessionCreated]:
        """Create a session and its first chat (``title``, ``clone_url`` or ``repo_owner`` +
        ``repo_name``, ``branch``, ``is_new_branch``, ``auto_commit_push``…). Never sent twice
        on a 502/503: a second one would be a second session."""
        return Call(_model(schemas.SessionCreated), json=_body(body, fields))

    @endpoint("GET", "/api/sessions")
    def list_sessions(
        self,
        *,
        status: Literal["active", "archived", "all"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> Call[schemas.SessionList]:
        """The caller's sessions, newest first; the next page by ``next_cursor`` (or offset)."""
        params = _query(status=status, limit=limit, cursor=cursor, offset=offset)
        return Call(_model(schemas.SessionList), params=params)

    @endpoint("GET", "/api/sessions/{sessionId}")
    def get_session(self, session_id: str) -> Call[schemas.Session]:
        return Call(_session, {"sessionId": session_id})

    @endpoint("PATCH", "/api/sessions/{sessionId}")
    def update_session(
        self,
        /,
        session_id: str,
        body: schemas.SessionPatch | Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Call[schemas.Session]:
        """Change ``title``, ``status`` (``archived`` archives, ``completed`` unarchives),
        ``lines_added``, ``lines_removed``."""
        return Call(_session, {"sessionId": session_id}, json=_body(body, fields) or {})

    @endpoint("DELETE", "/api/sessions/{sessionId}")
    def delete_session(self, session_id: str) -> Call[None]:
        """Delete a session with its sandbox, snapshots, chats and messages."""
        return Call(_none, {"sessionId": session_id})

    # --- chats ----------------------------------------------------------------------------------

    @endpoint("GET", "/api/sessions/{sessionId}/chats")
    def list_chats(self, session_id: str) -> Call[schemas.ChatList]:
        """The session's chats, oldest first, with unread, streaming and waiting state."""
        return Call(_model(schemas.ChatList), {"sessionId": session_id})

    @endpoint("POST", "/api/sessions/{sessionId}/chats")
    def create_chat(self, session_id: str, chat_id: str | None = None) -> Call[schemas.Chat]:
        """A new chat in the session; with ``chat_id``, idempotent (and so sent again on a
        502/503): the chat of that id is answered if the session has it."""
        body = {"id": chat_id} if chat_id is not None else None
        return Call(_chat, {"sessionId": session_id}, json=body, safe=chat_id is not None)

    @endpoint("GET", "/api/sessions/{sessionId}/chats/{chatId}")
    def get_chat(self, session_id: str, chat_id: str) -> Call[schemas.ChatDetail]:
        """The chat with its stored messages, and what its live turn waits for."""
        return Call(_model(schemas.ChatDetail), {"sessionId": session_id, "chatId": chat_id})

    @endpoint("PATCH", "/api/sessions/{sessionId}/chats/{chatId}")
    def update_chat(
        self,
        /,
        session_id: str,
        chat_id: str,
        body: schemas.ChatPatch | Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Call[schemas.Chat]:
        """Change ``title``, ``model_id`` or ``approval_rules``."""
        path = {"sessionId": session_id, "chatId": chat_id}
        return Call(_chat, path, json=_body(body, fields) or {})

    @endpoint("DELETE", "/api/sessions/{sessionId}/chats/{chatId}")
    def delete_chat(self, session_id: str, chat_id: str) -> Call[None]:
        """Delete a chat (not the session's only one)."""
        return Call(_none, {"sessionId": session_id, "chatId": chat_id})

    @endpoint("POST", "/api/sessions/{sessionId}/chats/{chatId}/read", safe=True)
    def mark_chat_read(self, session_id: str, chat_id: str) -> Call[None]:
        return Call(_none, {"sessionId": session_id, "chatId": chat_id})

    @endpoint("GET", "/api/sessions/{sessionId}/usage")
    def session_usage(self, session_id: str) -> Call[schemas.SessionUsage]:
        """Usage and cost of the session's finished runs, in all and per chat."""
        return Call(_model(schemas.SessionUsage), {"sessionId": session_id})

    @endpoint("GET", "/api/sessions/{sessionId}/chats/{chatId}/usage")
    def chat_usage(self, session_id: str, chat_id: str) -> Call[schemas.ChatUsage]:
        """Usage and cost of the chat's finished runs."""
        return Call(_model(schemas.ChatUsage), {"sessionId": session_id, "chatId": chat_id})

    @endpoint("DELETE", "/api/sessions/{sessionId}/chats/{chatId}/messages/{messageId}")
    def delete_messages(
        self, session_id: str, chat_id: str, message_id: str
    ) -> Call[schemas.MessagesDeleted]:
        """Delete a user message and every message after it (to edit or retry it)."""
        path = {"sessionId": session_id, "chatId": chat_id, "messageId": message_id}
        return Call(_model(schemas.MessagesDeleted), path)

    @endpoint("POST", "/api/sessions/{sessionId}/chats/{chatId}/fork")
    def fork_chat(
        self, session_id: str, chat_id: str, message_id: str, *, new_chat_id: str | None = None
    ) -> Call[schemas.Chat]:
        """A new chat with copies of the messages through that assistant message."""
        body = {"messageId": message_id, **({"id": new_chat_id} if new_chat_id else {})}
        return Call(_chat, {"sessionId": session_id, "chatId": chat_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/chats/{chatId}/messages", safe=True)
    def upsert_message(
        self,
        session_id: str,
        chat_id: str,
        message: schemas.AssistantMessageIn | Mapping[str, Any],
    ) -> Call[schemas.MessageUpserted]:
        """Store an assistant message (insert, or replace the one of its id: safe to repeat)."""
        path = {"sessionId": session_id, "chatId": chat_id}
        return Call(_model(schemas.MessageUpserted), path, json=_body(message, {}))

    # --- the sandbox's lifecycle ----------------------------------------------------------------

    @endpoint("GET", "/api/sessions/{sessionId}/sandbox")
    def sandbox_state(self, session_id: str) -> Call[schemas.SandboxState]:
        """The sandbox's lifecycle state and deadlines (database only, cheap)."""
        return Call(_model(schemas.SandboxState), {"sessionId": session_id})

    @endpoint("POST", "/api/sessions/{sessionId}/sandbox/hibernate", safe=True)
    def hibernate_sandbox(
        self, session_id: str, *, expected_lifecycle_version: int | None = None
    ) -> Call[schemas.SandboxState]:
        """Snapshot and stop the sandbox now (a hibernated one stays so)."""
        body = _query(expectedLifecycleVersion=expected_lifecycle_version) or None
        return Call(_model(schemas.SandboxState), {"sessionId": session_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/sandbox/resume", safe=True)
    def resume_sandbox(
        self, session_id: str, *, expected_lifecycle_version: int | None = None
    ) -> Call[schemas.SandboxState]:
        """Restore a hibernated sandbox (no-op when active)."""
        body = _query(expectedLifecycleVersion=expected_lifecycle_version) or None
        return Call(_model(schemas.SandboxState), {"sessionId": session_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/sandbox/extend")
    def extend_sandbox(
        self, session_id: str, *, expected_lifecycle_version: int | None = None
    ) -> Call[schemas.SandboxState]:
        """Push the hard deadline back (not sent twice: it would push it twice)."""
        body = _query(expectedLifecycleVersion=expected_lifecycle_version) or None
        return Call(_model(schemas.SandboxState), {"sessionId": session_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/sandbox/activity", safe=True)
    def record_activity(
        self, session_id: str, *, expected_lifecycle_version: int | None = None
    ) -> Call[schemas.SandboxState]:
        """Restart the idle deadline."""
        body = _query(expectedLifecycleVersion=expected_lifecycle_version) or None
        return Call(_model(schemas.SandboxState), {"sessionId": session_id}, json=body)

    # --- turns ----------------------------------------------------------------------------------

    @stream("POST", "/api/chat")
    def send_message(
        self,
        session_id: str,
        chat_id: str,
        message: str | Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> StreamCall:
        """Start a turn with a user message (a text, or a whole AI SDK UI message with its
        ``id`` and ``parts``) and stream it. The chat is created if you have none of that id.
        The request is made by this call (:class:`~.errors.ConflictError` when the chat has a
        live turn); the chunks come as you iterate. Sent again on 429 only: after a 502 the
        turn may have started."""
        body: dict[str, Any] = {
            "id": chat_id,
            "sessionId": session_id,
            "trigger": "submit-message",
            "messages": [user_message(message) if isinstance(message, str) else dict(message)],
        }
        if model is not None:
            body["model"] = model
        return StreamCall(chat_id, json=body)

    @stream("POST", "/api/chat")
    def submit_tool_result(
        self, session_id: str, chat_id: str, message: Mapping[str, Any], *, start_index: int
    ) -> StreamCall:
        """Post the assistant message back with a client tool's output or approval answers, as
        the AI SDK does, and stream the rest of the turn from ``start_index`` (the ``index`` of
        the stream that ended at the question)."""
        return _tool_result(session_id, chat_id, message, start_index)

    @stream("POST", "/api/chat")
    def answer_question(
        self,
        session_id: str,
        chat_id: str,
        call: ToolInputAvailableChunk | schemas.PendingQuestion,
        output: Mapping[str, Any],
        *,
        start_index: int,
    ) -> StreamCall:
        """Answer the agent's ``ask_user_question`` call (``{"answers": {question: answer}}``
        or ``{"declined": true}``) and stream the rest of the turn from ``start_index``."""
        part = {
            "type": "tool-ask_user_question",
            "toolCallId": call.tool_call_id,
            "state": "output-available",
            "input": call.input,
            "output": dict(output),
        }
        return _tool_result(session_id, chat_id, _assistant([part]), start_index)

    @stream("POST", "/api/chat")
    def answer_approvals(
        self,
        session_id: str,
        chat_id: str,
        decisions: Mapping[str, bool],
        *,
        reasons: Mapping[str, str] | None = None,
        start_index: int,
    ) -> StreamCall:
        """Approve or deny the calls waiting for a person, by approval id (all of a step's
        together), with an optional reason each, and stream the rest of the turn."""
        parts = [
            {
                "type": "dynamic-tool",
                "state": "approval-responded",
                "approval": {
                    "id": approval_id,
                    "approved": approved,
                    **(
                        {"reason": reasons[approval_id]}
                        if reasons and approval_id in reasons
                        else {}
                    ),
                },
            }
            for approval_id, approved in decisions.items()
        ]
        return _tool_result(session_id, chat_id, _assistant(parts), start_index)

    @live_stream("GET", STREAM_PATH)
    def resume_stream(self, chat_id: str, start_index: int = 0) -> StreamCall:
        """The chat's live turn from chunk ``start_index`` (negative: that many before the
        last one written), or None when no turn is live."""
        params = {"startIndex": start_index}
        return StreamCall(chat_id, {"chatId": chat_id}, params, index=start_index)

    @endpoint("POST", "/api/chat/{chatId}/stop", safe=True)
    def stop_turn(self, chat_id: str) -> Call[schemas.StopResult]:
        """Stop the chat's live turn (its partial reply stays); ``stopped`` False if none was."""
        return Call(_model(schemas.StopResult), {"chatId": chat_id})

    @endpoint("POST", "/api/chat/runs")
    def create_run(
        self, /, body: schemas.RunCreate | Mapping[str, Any] | None = None, **fields: Any
    ) -> Call[schemas.RunAccepted]:
        """Start a headless turn (``prompt`` or ``messages``; ``session_id``, ``chat_id``,
        ``model``…; a new session unless given); follow it with :meth:`get_run`."""
        return Call(_model(schemas.RunAccepted), json=_body(body, fields) or {})

    @endpoint("GET", "/api/chat/runs/{runId}")
    def get_run(self, run_id: str) -> Call[schemas.Run]:
        """A run's status, usage and reply text."""
        return Call(_model(schemas.Run), {"runId": run_id})

    @endpoint("GET", "/api/runs")
    def list_runs(
        self, *, status: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> Call[schemas.RunList]:
        """The caller's runs, newest first."""
        params = _query(status=status, limit=limit, offset=offset)
        return Call(_model(schemas.RunList), params=params)

    @endpoint("GET", "/api/models")
    def list_models(self) -> Call[schemas.ModelList]:
        """The models this server can use, the caller's default marked."""
        return Call(_model(schemas.ModelList))

    # --- the workspace --------------------------------------------------------------------------

    @endpoint("GET", "/api/sessions/{sessionId}/diff")
    def diff(self, session_id: str) -> Call[schemas.Diff]:
        """The workspace's diff against its base (restores a hibernated sandbox)."""
        return Call(_model(schemas.Diff), {"sessionId": session_id})

    @endpoint("GET", "/api/sessions/{sessionId}/diff/cached")
    def cached_diff(self, session_id: str) -> Call[schemas.CachedDiff]:
        """The diff as last computed (works while hibernated)."""
        return Call(_model(schemas.CachedDiff), {"sessionId": session_id})

    @endpoint("GET", "/api/sessions/{sessionId}/files")
    def list_files(
        self, session_id: str, path: str = "", *, all: bool = False
    ) -> Call[schemas.FileTree]:
        """The workspace's entries under ``path`` (``all``: with ``.git`` and ``node_modules``)."""
        params = {"path": path, **({"all": "true"} if all else {})}
        return Call(_model(schemas.FileTree), {"sessionId": session_id}, params=params)

    @endpoint("GET", "/api/sessions/{sessionId}/files/content")
    def read_file(self, session_id: str, path: str) -> Call[schemas.FileContent]:
        """A file's content: ``content`` for text, ``content_base64`` for a binary file."""
        return Call(_model(schemas.FileContent), {"sessionId": session_id}, {"path": path})

    @endpoint("GET", "/api/sessions/{sessionId}/files/content")
    def download_file(self, session_id: str, path: str) -> Call[bytes]:
        """A file's bytes."""
        params = {"path": path, "raw": "true"}
        return Call(_bytes, {"sessionId": session_id}, params)

    @endpoint("PUT", "/api/sessions/{sessionId}/files/content")
    def upload_file(self, session_id: str, path: str, content: bytes) -> Call[schemas.FileEntry]:
        """Write a file (its parents are created)."""
        return Call(
            _model(schemas.FileEntry), {"sessionId": session_id}, {"path": path}, content=content
        )

    @endpoint("GET", "/api/sessions/{sessionId}/files/archive")
    def download_archive(
        self, session_id: str, *, format: Literal["tar.gz", "zip"] = "tar.gz", all: bool = False
    ) -> Call[bytes]:
        """The whole workspace as a ``.tar.gz`` or ``.zip``."""
        params = {"format": format, **({"all": "true"} if all else {})}
        return Call(_bytes, {"sessionId": session_id}, params)

    @endpoint("GET", "/api/sessions/{sessionId}/git/status")
    def git_status(self, session_id: str) -> Call[schemas.GitStatus]:
        return Call(_model(schemas.GitStatus), {"sessionId": session_id})

    @endpoint("POST", "/api/sessions/{sessionId}/git/commit")
    def git_commit(
        self, session_id: str, *, message: str | None = None, chat_id: str | None = None
    ) -> Call[schemas.GitCommit]:
        """Stage everything and commit it (without ``message``, the chat's model writes one)."""
        body = _query(message=message, chatId=chat_id) or None
        return Call(_model(schemas.GitCommit), {"sessionId": session_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/discard-uncommitted", safe=True)
    def discard_changes(
        self, session_id: str, file_path: str | None = None
    ) -> Call[schemas.DiscardResult]:
        """Throw away uncommitted changes: of one path, or all."""
        body = _query(filePath=file_path) or None
        return Call(_model(schemas.DiscardResult), {"sessionId": session_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/git/push", safe=True)
    def git_push(self, session_id: str) -> Call[schemas.PushResult]:
        """Push the current branch (never forced; pushed again, it changes nothing)."""
        return Call(_model(schemas.PushResult), {"sessionId": session_id})

    @endpoint("POST", "/api/sessions/{sessionId}/pr", safe=True)
    def open_pull_request(
        self,
        /,
        session_id: str,
        body: schemas.PullRequestCreate | Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Call[schemas.PullRequestOpened]:
        """Open the session's pull request (``title``, ``body``, ``draft``, ``base``), or answer
        the branch's open one: safe to repeat."""
        path = {"sessionId": session_id}
        return Call(_model(schemas.PullRequestOpened), path, json=_body(body, fields))

    @endpoint("GET", "/api/sessions/{sessionId}/pr")
    def get_pull_request(self, session_id: str) -> Call[schemas.PullRequest]:
        return Call(_model(schemas.PullRequest), {"sessionId": session_id})

    @endpoint("POST", "/api/sessions/{sessionId}/pr/merge")
    def merge_pull_request(
        self, session_id: str, *, method: Literal["merge", "squash", "rebase"] | None = None
    ) -> Call[schemas.PullRequestMerged]:
        body = _query(method=method) or None
        return Call(_model(schemas.PullRequestMerged), {"sessionId": session_id}, json=body)

    @endpoint("POST", "/api/sessions/{sessionId}/pr/close", safe=True)
    def close_pull_request(self, session_id: str) -> Call[schemas.PullRequest]:
        return Call(_model(schemas.PullRequest), {"sessionId": session_id})

    @endpoint("GET", "/api/sessions/{sessionId}/skills")
    def list_skills(self, session_id: str) -> Call[schemas.Skills]:
        return Call(_model(schemas.Skills), {"sessionId": session_id})

    @endpoint("PUT", "/api/sessions/{sessionId}/skills")
    def set_skills(
        self,
        session_id: str,
        global_skill_refs: Iterable[schemas.SkillRefInput | Mapping[str, Any]],
    ) -> Call[schemas.SkillsUpdated]:
        """Replace the session's global skills (installed now if the sandbox is active)."""
        refs = [_body(ref, {}) or {} for ref in global_skill_refs]
        body = {"globalSkillRefs": refs}
        return Call(_model(schemas.SkillsUpdated), {"sessionId": session_id}, json=body)

    # --- the account ----------------------------------------------------------------------------

    @endpoint("GET", "/api/account/forge-token")
    def forge_token_status(self) -> Call[schemas.ForgeTokenStatus]:
        return Call(_model(schemas.ForgeTokenStatus))

    @endpoint("PUT", "/api/account/forge-token")
    def set_forge_token(self, token: str) -> Call[schemas.ForgeTokenStatus]:
        return Call(_model(schemas.ForgeTokenStatus), json={"token": token})

    @endpoint("DELETE", "/api/account/forge-token")
    def delete_forge_token(self) -> Call[None]:
        return Call(_none)

    @endpoint("GET", "/api/account/default-model")
    def get_default_model(self) -> Call[schemas.DefaultModel]:
        return Call(_model(schemas.DefaultModel))

    @endpoint("PUT", "/api/account/default-model")
    def set_default_model(self, model_id: str) -> Call[schemas.DefaultModel]:
        return Call(_model(schemas.DefaultModel), json={"modelId": model_id})

    @endpoint("DELETE", "/api/account/default-model")
    def clear_default_model(self) -> Call[None]:
        return Call(_none)

    @endpoint("GET", "/api/usage")
    def usage(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        group_by: Literal["day", "model", "session"] | None = None,
    ) -> Call[schemas.UsageReport]:
        """Usage and cost of finished runs in ``[start, end)`` (ISO dates or date-times)."""
        params = _query(**{"from": start, "to": end, "groupBy": group_by})
        return Call(_model(schemas.UsageReport), params=params)

    # --- open-agents' /api/sandbox routes -------------------------------------------------------

    @endpoint("GET", "/api/sandbox/status")
    def compat_sandbox_status(self, session_id: str) -> Call[schemas.SandboxStatusCompat]:
        return Call(_model(schemas.SandboxStatusCompat), params={"sessionId": session_id})

    @endpoint("GET", "/api/sandbox/reconnect")
    def compat_sandbox_reconnect(self, session_id: str) -> Call[schemas.SandboxReconnect]:
        return Call(_model(schemas.SandboxReconnect), params={"sessionId": session_id})

    @endpoint("POST", "/api/sandbox", safe=True)
    def compat_sandbox_create(self, session_id: str) -> Call[schemas.SandboxReady]:
        """Create or resume the session's sandbox, waiting until it runs (safe to repeat)."""
        return Call(_model(schemas.SandboxReady), json={"sessionId": session_id})

    @endpoint("DELETE", "/api/sandbox")
    def compat_sandbox_delete(self, session_id: str) -> Call[schemas.SandboxStopped]:
        return Call(_model(schemas.SandboxStopped), json={"sessionId": session_id})

    @endpoint("POST", "/api/sandbox/extend")
    def compat_sandbox_extend(self, session_id: str) -> Call[schemas.SandboxExtended]:
        return Call(_model(schemas.SandboxExtended), json={"sessionId": session_id})

    @endpoint("POST", "/api/sandbox/activity", safe=True)
    def compat_sandbox_activity(self, session_id: str) -> Call[schemas.SandboxActivity]:
        return Call(_model(schemas.SandboxActivity), json={"sessionId": session_id})

    # --- the description itself -----------------------------------------------------------------

    @classmethod
    def operations(cls) -> set[tuple[str, str]]:
        """(method, path template) of every route covered, as ``/openapi.json`` names them."""
        return {
            (value.method, value.template)
            for value in vars(cls).values()
            if isinstance(value, _Route)
        }
