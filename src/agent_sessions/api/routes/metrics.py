"""``GET /metrics``: Prometheus' text format (README, Operating).

No API key: a scraper is not an account. Off with ``AGENT_SESSIONS_METRICS_ENABLED=false``
(the route is then not there: 404); behind a bearer token with
``AGENT_SESSIONS_METRICS_TOKEN``. Not in the OpenAPI document, which describes the API. A
``worker`` answers the same with ``--metrics-port`` (:mod:`agent_sessions.metrics_server`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from agent_sessions import metrics
from agent_sessions.api.deps import ServicesDep
from agent_sessions.exceptions import Unauthorized
from agent_sessions.metrics_server import UNAUTHORIZED, DatabaseGauges, bearer_matches

router = APIRouter(tags=["operations"])

_gauges = DatabaseGauges()


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request, services: ServicesDep) -> Response:
    if not bearer_matches(request.headers.get("authorization", ""), services.settings):
        raise Unauthorized(UNAUTHORIZED)
    if _gauges.due():
        await services.db.read_call(_gauges.count)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)
