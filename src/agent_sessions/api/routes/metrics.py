"""``GET /metrics``: Prometheus' text format (README, Operating).

No API key: a scraper is not an account. Off with ``AGENT_SESSIONS_METRICS_ENABLED=false``
(the route is then not there: 404); behind a bearer token with
``AGENT_SESSIONS_METRICS_TOKEN``. Not in the OpenAPI document, which describes the API.
"""

from __future__ import annotations

import hmac
import math
import time

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from agent_sessions import metrics
from agent_sessions.api.deps import ServicesDep
from agent_sessions.exceptions import Unauthorized
from agent_sessions.store import Database
from agent_sessions.store import sessions as session_store
from agent_sessions.store import turns as turn_store

router = APIRouter(tags=["operations"])

DATABASE_GAUGES_MAX_AGE = 5.0
"""Seconds the database's counts are reused: scrapers in a hurry cost no more queries."""
_counted_at = -math.inf


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request, services: ServicesDep) -> Response:
    token = services.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, b"Bearer " + token.get_secret_value().encode()):
            raise Unauthorized("GET /metrics needs Authorization: Bearer <metrics token>")
    await _count_in_database(services.db)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)


async def _count_in_database(db: Database) -> None:
    """Sessions by state and queued turns: two aggregate queries, at most every few seconds."""
    global _counted_at
    now = time.monotonic()
    if now - _counted_at < DATABASE_GAUGES_MAX_AGE:
        return
    _counted_at = now

    def count(s: Session) -> tuple[dict[str | None, int], int]:
        return session_store.count_by_state(s), turn_store.count_queued(s)

    by_state, queued = await db.read_call(count)
    metrics.set_database_gauges(by_state, queued)
