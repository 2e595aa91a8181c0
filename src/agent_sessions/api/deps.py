"""FastAPI dependencies as ``Annotated`` aliases (the full-stack-fastapi-template pattern)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

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


async def _services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in the threadpool, a hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]

# Declared for OpenAPI (securitySchemes named as in the seed); the headers are read raw below so
# that a malformed Authorization header is refused rather than ignored.
api_key_scheme = APIKeyHeader(name="x-api-key", scheme_name="ApiKeyAuth", auto_error=False)
bearer_scheme = HTTPBearer(scheme_name="BearerAuth", auto_error=False)


async def _current_account(
    request: Request,
    services: ServicesDep,
    _key: Annotated[str | None, Security(api_key_scheme)],
    _bearer: Annotated[object, Security(bearer_scheme)],
) -> str:
    return await services.auth.account_id(
        api_key=request.headers.get("x-api-key"),
        authorization=request.headers.get("authorization"),
    )


AccountId = Annotated[str, Depends(_current_account)]
"""The authenticated account's id (401 before the route runs otherwise)."""
