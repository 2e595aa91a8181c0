"""FastAPI dependencies as ``Annotated`` aliases (the full-stack-fastapi-template pattern)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

from fastapi import Depends, Request

from agent_sessions import logs
from agent_sessions.agent.service import Turns
from agent_sessions.api.ratelimit import WriteRate
from agent_sessions.auth import Authenticator
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.settings import Settings
from agent_sessions.store import Database
from agent_sessions.workspace.credentials import Vault


@dataclass(frozen=True)
class Services:
    """What the routes use, built once per app in ``create_app``."""

    settings: Settings
    db: Database
    auth: Authenticator
    lifecycle: Lifecycle
    turns: Turns
    writes: WriteRate
    vault: Vault
    """Seals and opens forge tokens (ADR 13)."""


async def _services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in the threadpool, a hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
"""Methods counted against ``AGENT_SESSIONS_ACCOUNT_WRITES_PER_MINUTE``."""


class Caller(NamedTuple):
    """An authenticated request: the services and the calling account's id.

    One dependency rather than two (services, account): FastAPI spends about 60 µs solving
    each dependency of every request (``bench/api.py``). Routes unpack it on their first line.
    """

    services: Services
    account_id: str


async def authenticate(request: Request) -> Caller:
    """The caller of ``request`` (also called directly by ``direct``'s routes)."""
    # The headers are read raw so that a malformed Authorization header is refused, not ignored.
    # OpenAPI's securitySchemes are added in app.py rather than through FastAPI's Security
    # dependencies, which would cost two more dependency resolutions per request.
    services: Services = request.app.state.services
    if params := request.path_params:  # the ids every log line of the request carries
        logs.bind(
            session=params.get("sessionId"), chat=params.get("chatId"), run=params.get("runId")
        )
    account_id = await services.auth.account_id(
        api_key=request.headers.get("x-api-key"),
        authorization=request.headers.get("authorization"),
    )
    if request.method in WRITE_METHODS:  # reads are never limited (the hot GET path, ADR 8)
        services.writes.take(account_id)
    return Caller(services, account_id)


CallerDep = Annotated[Caller, Depends(authenticate)]
"""The caller (401 before the route runs otherwise; 429 past the account's write rate)."""
