"""The Python client of the Agent Sessions HTTP API, sync (:class:`Client`) and async
(:class:`AsyncClient`), on httpx.

::

    from agent_sessions.client import Client, TextDeltaChunk

    with Client("http://127.0.0.1:8000", api_key) as client:
        created = client.create_session(title="demo")
        for chunk in client.send_message(created.session.id, created.chat.id, "Hi"):
            if isinstance(chunk, TextDeltaChunk):
                print(chunk.delta, end="")

* Every route is a method (``routes``); answers are the server's own Pydantic models
  (``agent_sessions.api.schemas``, which imports no server code).
* A turn's stream iterates typed chunks (``chunks``) and resumes from the last chunk's index
  after a dropped connection (``streams``).
* Error answers raise one class per status under :class:`ApiError` (``errors``); 429, 502
  and 503 are retried with backoff where that cannot make a request act twice
  (:class:`RetryPolicy`).
"""

from agent_sessions.client.aio import AsyncClient
from agent_sessions.client.chunks import (
    AbortChunk,
    BaseChunk,
    Chunk,
    DataChunk,
    ErrorChunk,
    FileChunk,
    FinishChunk,
    FinishStepChunk,
    MessageMetadataChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    SourceDocumentChunk,
    SourceUrlChunk,
    StartChunk,
    StartStepChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolApprovalRequestChunk,
    ToolInputAvailableChunk,
    ToolInputDeltaChunk,
    ToolInputErrorChunk,
    ToolInputStartChunk,
    ToolOutputAvailableChunk,
    ToolOutputDeniedChunk,
    ToolOutputErrorChunk,
    UnknownChunk,
    parse_chunk,
)
from agent_sessions.client.errors import (
    ApiError,
    BadGatewayError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    SessionsError,
    StreamDropped,
    UnauthorizedError,
    UnprocessableEntityError,
)
from agent_sessions.client.retry import NO_RETRY, RetryPolicy
from agent_sessions.client.routes import user_message
from agent_sessions.client.streams import AsyncTurnStream, TurnStream
from agent_sessions.client.sync import Client

__all__ = [
    "NO_RETRY",
    "AbortChunk",
    "ApiError",
    "AsyncClient",
    "AsyncTurnStream",
    "BadGatewayError",
    "BadRequestError",
    "BaseChunk",
    "Chunk",
    "Client",
    "ConflictError",
    "DataChunk",
    "ErrorChunk",
    "FileChunk",
    "FinishChunk",
    "FinishStepChunk",
    "ForbiddenError",
    "GatewayTimeoutError",
    "InternalServerError",
    "MessageMetadataChunk",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ReasoningDeltaChunk",
    "ReasoningEndChunk",
    "ReasoningStartChunk",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "SessionsError",
    "SourceDocumentChunk",
    "SourceUrlChunk",
    "StartChunk",
    "StartStepChunk",
    "StreamDropped",
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
    "TurnStream",
    "UnauthorizedError",
    "UnknownChunk",
    "UnprocessableEntityError",
    "parse_chunk",
    "user_message",
]
