"""An ``AsyncOpenAI`` client whose chat completion requests skip the SDK's request transform
when it cannot change anything.

Before sending, the SDK walks the whole request body against its ``TypedDict`` types
(``async_maybe_transform``) to rename aliased keys and format dates and files. A message is a
union of six types, and the walk tries each one, so every model request pays for the entire
history again: with a 20-step turn it was a fifth of the server's CPU (``bench/agent.py``,
``py-spy``), and it grows with every message. For chat completions the types declare no alias
and no format (``_transform_is_identity`` checks that, once), so for a body of plain JSON values
the walk returns what it was given, minus omitted values; this client sends that directly and
hands anything else to the SDK's own path. ``tests/agent/test_openai_client.py`` holds the
requests of both paths equal (headers, and the body as JSON).

Streamed chunks are built the other way round: the SDK builds each ``ChatCompletionChunk`` with
``construct_type``, a Python walk over the model's fields (7% of a turn's CPU, most of it per
chunk), where pydantic-core's validation builds the same object several times faster. A chunk
that does not validate (a server with its own ``finish_reason``, say) is built the SDK's
lenient way, so nothing a server sends is refused that the SDK accepted.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

import httpx2
import pydantic
from openai import AsyncOpenAI, AsyncStream
from openai._base_client import make_request_options
from openai._types import not_given
from openai._utils import is_given
from openai._utils._transform import PropertyInfo, get_type_hints
from openai.resources.chat import AsyncChat
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params
from typing_extensions import is_typeddict

# ``create``'s arguments that are request options, not body fields.
_REQUEST_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def _transform_is_identity() -> bool:
    """Whether no type in the chat completion body declares a key alias or a format."""
    seen: set[int] = set()

    def clean(tp: object) -> bool:
        if id(tp) in seen:
            return True
        seen.add(id(tp))
        if typing.get_origin(tp) is typing.Annotated:
            base, *extras = typing.get_args(tp)
            return not any(isinstance(e, PropertyInfo) for e in extras) and clean(base)
        if is_typeddict(tp):
            return all(clean(t) for t in get_type_hints(tp, include_extras=True).values())
        return all(clean(arg) for arg in typing.get_args(tp))

    return all(
        clean(params)
        for params in (
            completion_create_params.CompletionCreateParamsStreaming,
            completion_create_params.CompletionCreateParamsNonStreaming,
        )
    )


def _plain_json(value: object) -> bool:
    """Only dicts with string keys, lists and JSON scalars: what the transform returns as is."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(type(k) is str for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, _SCALARS):
            return False
    return True


class _Completions(AsyncCompletions):
    async def create(self, **params: Any) -> Any:
        body = {k: v for k, v in params.items() if k not in _REQUEST_OPTIONS and is_given(v)}
        if (
            "messages" not in body
            or "model" not in body
            or not _transform_is_identity()
            or not _plain_json(body)
        ):
            return await super().create(**params)
        # (A class as ``response_format``, which the SDK checks, is not plain JSON: SDK path.)
        return await self._post(
            "/chat/completions",
            body=body,
            options=make_request_options(
                extra_headers=params.get("extra_headers"),
                extra_query=params.get("extra_query"),
                extra_body=params.get("extra_body"),
                timeout=params.get("timeout", not_given),
                security={"bearer_auth": True},
            ),
            cast_to=ChatCompletion,
            stream=bool(body.get("stream", False)),
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


class _Chat(AsyncChat):
    @functools.cached_property
    def completions(self) -> AsyncCompletions:
        return _Completions(self._client)


class DirectChatOpenAI(AsyncOpenAI):
    """``AsyncOpenAI`` with chat completion bodies sent without the per-request transform."""

    @functools.cached_property
    def chat(self) -> AsyncChat:
        return _Chat(self)

    def _process_response_data(
        self, *, data: object, cast_to: type[Any], response: httpx2.Response
    ) -> Any:
        if cast_to is ChatCompletionChunk and type(data) is dict:
            try:
                return ChatCompletionChunk.model_validate(data)
            except pydantic.ValidationError:
                pass
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)

    @property
    def user_agent(self) -> str:
        # The SDK names the client class here; servers see the same agent as before.
        return f"AsyncOpenAI/Python {self._version}"
