"""The chunks of a turn's stream (the AI SDK UI message stream, v1), as typed models.

One model per chunk type the service emits, following the AI SDK's ``ui-message-chunks.ts``
(fields in snake_case, read from and written back as the wire's camelCase). ``data-*`` chunks
(``data-sandbox``, ``data-commit``, ``data-pr``, ``data-hook``, ``data-compaction``…) are all
:class:`DataChunk`. A chunk of a type this library does not know, or a known type with an
unexpected shape, comes through as :class:`UnknownChunk` with all its fields: a newer server
never breaks an older client. Every model keeps fields it does not declare (``extra``), and
:meth:`BaseChunk.to_dict` gives the chunk back as the server sent it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

__all__ = [
    "AbortChunk",
    "BaseChunk",
    "Chunk",
    "DataChunk",
    "ErrorChunk",
    "FileChunk",
    "FinishChunk",
    "FinishStepChunk",
    "MessageMetadataChunk",
    "ReasoningDeltaChunk",
    "ReasoningEndChunk",
    "ReasoningStartChunk",
    "SourceDocumentChunk",
    "SourceUrlChunk",
    "StartChunk",
    "StartStepChunk",
    "TextDeltaChunk",
    "TextEndChunk",
    "TextStartChunk",
    "ToolApprovalRequestChunk",
    "ToolInputAvailableChunk",
    "ToolInputDeltaChunk",
    "ToolInputErrorChunk",
    "ToolInputStartChunk",
    "ToolOutputAvailableChunk",
    "ToolOutputDeniedChunk",
    "ToolOutputErrorChunk",
    "UnknownChunk",
    "parse_chunk",
]

ProviderMetadata = dict[str, dict[str, Any]]


class BaseChunk(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
        frozen=True,
    )

    type: str

    def to_dict(self) -> dict[str, Any]:
        """The chunk as the wire has it (camelCase, only the fields it came with)."""
        return self.model_dump(by_alias=True, exclude_unset=True, warnings=False)


# --- the message and its steps ------------------------------------------------------------------


class StartChunk(BaseChunk):
    """The assistant message begins (or, after an answered question, continues)."""

    type: Literal["start"] = "start"
    message_id: str | None = None
    message_metadata: Any = None


class StartStepChunk(BaseChunk):
    type: Literal["start-step"] = "start-step"


class FinishStepChunk(BaseChunk):
    type: Literal["finish-step"] = "finish-step"


class FinishChunk(BaseChunk):
    """The response ends: the turn is over, or waits for an answer (``finish_reason``
    ``tool-calls``: a question or an approval)."""

    type: Literal["finish"] = "finish"
    finish_reason: str | None = None
    message_metadata: Any = None


class AbortChunk(BaseChunk):
    """The turn was stopped (``POST /api/chat/{chatId}/stop``)."""

    type: Literal["abort"] = "abort"
    reason: str | None = None


class ErrorChunk(BaseChunk):
    type: Literal["error"] = "error"
    error_text: str


class MessageMetadataChunk(BaseChunk):
    """The message's metadata: ``model``, ``usage``, ``durationMs``, ``finishReason``, ``runId``."""

    type: Literal["message-metadata"] = "message-metadata"
    message_metadata: Any


# --- text and reasoning -------------------------------------------------------------------------


class TextStartChunk(BaseChunk):
    type: Literal["text-start"] = "text-start"
    id: str
    provider_metadata: ProviderMetadata | None = None


class TextDeltaChunk(BaseChunk):
    type: Literal["text-delta"] = "text-delta"
    id: str
    delta: str
    provider_metadata: ProviderMetadata | None = None


class TextEndChunk(BaseChunk):
    type: Literal["text-end"] = "text-end"
    id: str
    provider_metadata: ProviderMetadata | None = None


class ReasoningStartChunk(BaseChunk):
    type: Literal["reasoning-start"] = "reasoning-start"
    id: str
    provider_metadata: ProviderMetadata | None = None


class ReasoningDeltaChunk(BaseChunk):
    type: Literal["reasoning-delta"] = "reasoning-delta"
    id: str
    delta: str
    provider_metadata: ProviderMetadata | None = None


class ReasoningEndChunk(BaseChunk):
    type: Literal["reasoning-end"] = "reasoning-end"
    id: str
    provider_metadata: ProviderMetadata | None = None


# --- tool calls ---------------------------------------------------------------------------------


class ToolInputStartChunk(BaseChunk):
    type: Literal["tool-input-start"] = "tool-input-start"
    tool_call_id: str
    tool_name: str
    provider_executed: bool | None = None
    dynamic: bool | None = None
    title: str | None = None


class ToolInputDeltaChunk(BaseChunk):
    type: Literal["tool-input-delta"] = "tool-input-delta"
    tool_call_id: str
    input_text_delta: str


class ToolInputAvailableChunk(BaseChunk):
    """A call's input is complete (an ``ask_user_question`` call waits for
    :meth:`~agent_sessions.client.Client.answer_question`)."""

    type: Literal["tool-input-available"] = "tool-input-available"
    tool_call_id: str
    tool_name: str
    input: Any = None
    provider_executed: bool | None = None
    dynamic: bool | None = None


class ToolInputErrorChunk(BaseChunk):
    type: Literal["tool-input-error"] = "tool-input-error"
    tool_call_id: str
    tool_name: str
    input: Any = None
    error_text: str


class ToolApprovalRequestChunk(BaseChunk):
    """The call waits for a person (:meth:`~agent_sessions.client.Client.answer_approvals`)."""

    type: Literal["tool-approval-request"] = "tool-approval-request"
    approval_id: str
    tool_call_id: str


class ToolOutputAvailableChunk(BaseChunk):
    type: Literal["tool-output-available"] = "tool-output-available"
    tool_call_id: str
    output: Any = None
    preliminary: bool | None = None
    provider_executed: bool | None = None
    dynamic: bool | None = None


class ToolOutputErrorChunk(BaseChunk):
    type: Literal["tool-output-error"] = "tool-output-error"
    tool_call_id: str
    error_text: str
    provider_executed: bool | None = None
    dynamic: bool | None = None


class ToolOutputDeniedChunk(BaseChunk):
    type: Literal["tool-output-denied"] = "tool-output-denied"
    tool_call_id: str


# --- sources, files, data -----------------------------------------------------------------------


class SourceUrlChunk(BaseChunk):
    type: Literal["source-url"] = "source-url"
    source_id: str
    url: str
    title: str | None = None


class SourceDocumentChunk(BaseChunk):
    type: Literal["source-document"] = "source-document"
    source_id: str
    media_type: str
    title: str
    filename: str | None = None


class FileChunk(BaseChunk):
    type: Literal["file"] = "file"
    url: str
    media_type: str


class DataChunk(BaseChunk):
    """A ``data-<name>`` chunk: ``data-sandbox`` (the sandbox's state while a turn restores it),
    ``data-commit``, ``data-pr``, ``data-hook``, ``data-compaction``… A ``transient`` one is
    not stored in the message."""

    id: str | None = None
    data: Any = None
    transient: bool | None = None

    @property
    def name(self) -> str:
        """``sandbox`` for ``data-sandbox``."""
        return self.type.removeprefix("data-")


class UnknownChunk(BaseChunk):
    """A chunk of a type this library does not know (or of an unexpected shape): its fields are
    all there, as extras (``to_dict()``)."""

    type: str = ""


_TYPED: dict[str, type[BaseChunk]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        StartChunk, StartStepChunk, FinishStepChunk, FinishChunk, AbortChunk, ErrorChunk,
        MessageMetadataChunk, TextStartChunk, TextDeltaChunk, TextEndChunk, ReasoningStartChunk,
        ReasoningDeltaChunk, ReasoningEndChunk, ToolInputStartChunk, ToolInputDeltaChunk,
        ToolInputAvailableChunk, ToolInputErrorChunk, ToolApprovalRequestChunk,
        ToolOutputAvailableChunk, ToolOutputErrorChunk, ToolOutputDeniedChunk, SourceUrlChunk,
        SourceDocumentChunk, FileChunk,
    )
}  # fmt: skip


def _tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if isinstance(kind, str):
        if kind in _TYPED:
            return kind
        if kind.startswith("data-"):
            return "data"
    return "unknown"


Chunk = Annotated[
    Annotated[StartChunk, Tag("start")]
    | Annotated[StartStepChunk, Tag("start-step")]
    | Annotated[FinishStepChunk, Tag("finish-step")]
    | Annotated[FinishChunk, Tag("finish")]
    | Annotated[AbortChunk, Tag("abort")]
    | Annotated[ErrorChunk, Tag("error")]
    | Annotated[MessageMetadataChunk, Tag("message-metadata")]
    | Annotated[TextStartChunk, Tag("text-start")]
    | Annotated[TextDeltaChunk, Tag("text-delta")]
    | Annotated[TextEndChunk, Tag("text-end")]
    | Annotated[ReasoningStartChunk, Tag("reasoning-start")]
    | Annotated[ReasoningDeltaChunk, Tag("reasoning-delta")]
    | Annotated[ReasoningEndChunk, Tag("reasoning-end")]
    | Annotated[ToolInputStartChunk, Tag("tool-input-start")]
    | Annotated[ToolInputDeltaChunk, Tag("tool-input-delta")]
    | Annotated[ToolInputAvailableChunk, Tag("tool-input-available")]
    | Annotated[ToolInputErrorChunk, Tag("tool-input-error")]
    | Annotated[ToolApprovalRequestChunk, Tag("tool-approval-request")]
    | Annotated[ToolOutputAvailableChunk, Tag("tool-output-available")]
    | Annotated[ToolOutputErrorChunk, Tag("tool-output-error")]
    | Annotated[ToolOutputDeniedChunk, Tag("tool-output-denied")]
    | Annotated[SourceUrlChunk, Tag("source-url")]
    | Annotated[SourceDocumentChunk, Tag("source-document")]
    | Annotated[FileChunk, Tag("file")]
    | Annotated[DataChunk, Tag("data")]
    | Annotated[UnknownChunk, Tag("unknown")],
    Discriminator(_tag),
]
"""Any chunk of the stream; match on the classes (``isinstance``, ``match``) or on ``type``."""

_CHUNK: TypeAdapter[Chunk] = TypeAdapter(Chunk)


def parse_chunk(body: str | bytes) -> Chunk:
    """One SSE ``data:`` payload → its chunk. Never raises: JSON that is not an object becomes
    an :class:`ErrorChunk` saying so, a shape this library does not expect an
    :class:`UnknownChunk`."""
    try:
        value = json.loads(body)
    except ValueError:
        return ErrorChunk(error_text=f"unreadable chunk from the server: {_clip(body)}")
    if not isinstance(value, dict):
        return ErrorChunk(error_text=f"unexpected chunk from the server: {_clip(body)}")
    try:
        return _CHUNK.validate_python(value)
    except ValidationError:
        try:
            return UnknownChunk.model_validate(value)
        except ValidationError:  # ``type`` is not even a string
            return UnknownChunk.model_construct(set(value), **value)


def _clip(body: str | bytes) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    return text[:200]
