"""FastAPI dependencies as ``Annotated`` aliases (the full-stack-fastapi-template pattern)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from agent_sessions.agent.service import Turns
from agent_sessions.auth import Authenticator
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.settings import Settings
from agent_sessions.store import Database


@dataclass(frozen=True)
class Services:
    """What the routes use, built once per app in ``create_app``."""

    settings: Settings
    db: Database
    auth: Authenticator
    lifecycle: Lifecycle
    turns: Turns


async def _services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in the threadpool, a hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


async def _current_account(request: Request) -> str:
    # The headers are read raw so that a malformed Authorization header is refused, not ignored.
    # OpenAPI's securitySchemes are added in app.py rather than through FastAPI's Security
    # dependencies, which would cost two more dependency resolutions per request.
    services: Services = request.app.state.services
    return await services.auth.account_id(
        api_key=request.headers.get("x-api-key"),
        authorization=request.headers.get("authorization"),
    )


AccountId = Annotated[str, Depends(_current_account)]
"""The authenticated account's id (401 before the route runs otherwise)."""
