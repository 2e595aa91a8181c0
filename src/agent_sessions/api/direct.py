"""The hot reads, served past FastAPI's router and dependency solver (issue 16).

For an authenticated ``GET /api/sessions/{id}`` FastAPI spent more time than our code did:
walking the included routers twice to select the route, then solving its one dependency and
its path parameter (a cProfile of the request: about 60 % of it). A route whose only inputs are
the caller and path parameters needs none of that, so :func:`direct_routes` registers each such
route once more as a plain Starlette route, put ahead of the routers: it calls the same endpoint
with the same caller (``deps.authenticate``) and renders the result with the route's own
response model, as FastAPI would. The FastAPI route stays as it is: the OpenAPI document comes
from it, and the direct one is left out of it. Errors leave through the same exception handlers
(Starlette's ``ExceptionMiddleware``), so they keep their shape and status.

A route that grows any other input (a query parameter, a header, a body, a dependency) is
refused here at start-up rather than served without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent_sessions.api.deps import authenticate


def direct_routes(
    routers: Iterable[APIRouter], endpoints: Iterable[Callable[..., Any]]
) -> list[Route]:
    """A direct route for each ``GET`` route of ``routers`` whose endpoint is in ``endpoints``."""
    wanted = set(endpoints)
    found = [
        route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in wanted and route.methods == {"GET"}
    ]
    missing = wanted - {route.endpoint for route in found}
    if missing:
        raise ValueError(f"no GET route for {sorted(e.__name__ for e in missing)}")
    return [_direct(route) for route in found]


def _direct(route: APIRoute) -> Route:
    dependant = route.dependant
    callers = [d for d in dependant.dependencies if d.call is authenticate]
    others = (
        dependant.query_params, dependant.header_params, dependant.cookie_params,
        dependant.body_params, dependant.request_param_name, dependant.response_param_name,
        dependant.background_tasks_param_name,
    )  # fmt: skip
    if (
        any(others)
        or len(callers) != 1
        or len(dependant.dependencies) != 1
        or {p.name for p in dependant.path_params} != set(route.param_convertors)
        or any(c.__class__.__name__ != "StringConvertor" for c in route.param_convertors.values())
        or route.status_code not in (None, 200)
    ):
        raise ValueError(f"{route.path}: inputs beyond the caller and path strings")
    caller_param = callers[0].name
    assert caller_param is not None
    endpoint: Callable[..., Awaitable[Any]] = route.endpoint
    render = TypeAdapter(route.response_model).dump_json if route.response_model else None

    async def handle(request: Request) -> Response:
        request.scope["route"] = direct  # as FastAPI's routes do: its template for the metrics
        caller = await authenticate(request)
        result = await endpoint(**{caller_param: caller}, **request.path_params)
        if isinstance(result, Response):
            return result
        assert render is not None, f"{route.path} returns a model without a response_model"
        return Response(render(result, by_alias=True), media_type="application/json")

    direct = Route(route.path, handle, methods=["GET"], name=route.name, include_in_schema=False)
    direct.methods = {"GET"}  # as the FastAPI route: HEAD stays a 405
    return direct
