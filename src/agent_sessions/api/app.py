"""The ASGI application: routers, error shape, CORS, body limit, OpenAPI tidy-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from agent_sessions import __version__
from agent_sessions.agent import registry
from agent_sessions.agent.service import Turns
from agent_sessions.api import console, errors
from agent_sessions.api.deps import WRITE_METHODS, Services
from agent_sessions.api.direct import direct_routes
from agent_sessions.api.forward import ForwardToHost
from agent_sessions.api.middleware import BodyLimitMiddleware, CORSMiddleware, RequestMetrics
from agent_sessions.api.ratelimit import WriteRate
from agent_sessions.api.responses import DESCRIPTIONS
from agent_sessions.api.routes import (
    account,
    chats,
    diff,
    files,
    git,
    git_push,
    health,
    messages,
    metrics,
    pr,
    runs,
    sandbox,
    sandbox_compat,
    sessions,
    skills,
    turns,
    usage,
)  # fmt: skip
from agent_sessions.auth import Authenticator
from agent_sessions.eventloop import asyncio_named
from agent_sessions.heap import freeze_startup_heap
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.settings import Settings, load_settings
from agent_sessions.store import Database
from agent_sessions.workspace.credentials import Vault

DESCRIPTION = (
    "Sessions — sandboxed runs of an LLM-driven agent with tool use, lifecycle hooks, and "
    "persistence. Each session pairs one sandbox with one or more chat threads."
)


SECURITY_SCHEMES = {
    "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "BearerAuth": {"type": "http", "scheme": "bearer"},
}


TOO_MANY_REQUESTS = {
    "description": DESCRIPTIONS[429],
    "headers": {
        "Retry-After": {
            "description": "Seconds after which the same request may succeed",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI without FastAPI's 422 entries: validation failures here answer 400 ``Error``."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title="Agent Sessions API", version=__version__, description=DESCRIPTION, routes=app.routes
    )
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.get("responses", {})
            if path.startswith("/api/"):
                operation["security"] = [{"ApiKeyAuth": []}, {"BearerAuth": []}]
                if method.upper() in WRITE_METHODS:  # the write rate (deps.py), and quotas
                    responses["429"] = TOO_MANY_REQUESTS
            responses.pop("422", None)
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault(
                    "400",
                    {
                        "description": "Bad request - malformed JSON or an invalid field",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    lifecycle: Lifecycle | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the app. The schema must already be migrated (``serve`` does it before start).

    The lifecycle (DBOS) starts and stops with the app's lifespan; with ``freeze_heap`` (the
    ``serve`` process) the start-up heap is then frozen out of full GC passes (``heap``).
    """
    database = db or Database(settings.resolved_database_url)
    lifecycle = lifecycle or Lifecycle(settings, database)
    agent_turns = Turns(settings, database)
    lifecycle.on_start(agent_turns.reconcile)
    lifecycle.on_takeover(agent_turns.adopt)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        lifecycle.start()
        if freeze_heap:
            freeze_startup_heap()
        try:
            with asyncio_named():
                yield
        finally:
            lifecycle.stop()
            registry.runs.clear()  # none of this process's turns runs on

    app = FastAPI(
        lifespan=lifespan,
        title="Agent Sessions API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # served from bundled assets by console.install
        redoc_url=None,
        # FastAPI's native OpenTelemetry asks the global providers on every request whether
        # one is configured (a tenth of a hot GET, issue 16): its request spans are on only
        # when traces are exported (tracing.py); its metrics and logs never (metrics.py, logs.py).
        telemetry={
            "tracing": settings.otlp_endpoint is not None,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
        },
    )
    app.state.services = Services(
        settings=settings,
        db=database,
        auth=Authenticator(database, settings),
        lifecycle=lifecycle,
        turns=agent_turns,
        writes=WriteRate(settings.account_writes_per_minute),
        vault=Vault(settings),
    )
    errors.install(app)
    # Matched in this order; the hottest route (GET /api/sessions/{id}) is in the first router.
    for router in (
        sessions.router, chats.router, sandbox.router, turns.router, health.router,
        diff.router, files.router, pr.router, git.router, git_push.router, skills.router,
        account.router, usage.router, messages.router, runs.router, sandbox_compat.router,
    ):  # fmt: skip
        app.include_router(router)
    console.install(app)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    # Ahead of the routers: the hot reads skip FastAPI's routing and dependency solving.
    app.router.routes[0:0] = direct_routes(
        [sessions.router, chats.router], [sessions.get_session, chats.list_chats, chats.get_chat]
    )
    if not settings.is_sqlite and settings.sandbox_provider == "local":
        app.add_middleware(ForwardToHost, settings=settings, db=database)  # inside the limits
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        larger=[*files.body_limits(settings)],
    )
    app.add_middleware(CORSMiddleware, origins=settings.cors_origins)
    app.add_middleware(RequestMetrics, access=settings.access_log)  # outermost: sees them all
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (settings from the environment)."""
    return create_app(load_settings(), freeze_heap=True)
