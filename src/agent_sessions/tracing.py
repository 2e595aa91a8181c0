"""OpenTelemetry traces, exported over OTLP/HTTP when ``AGENT_SESSIONS_OTLP_ENDPOINT`` is set
(README, Operating).

Off by default, and then nothing here is imported past this module: FastAPI's request spans
stay off (``api/app.py``), DBOS runs with OTLP disabled (``lifecycle/runtime.py``) and
pydantic-ai's agents are not instrumented (``agent/service.py``), so a request or a turn pays
for no span. On, one SDK tracer provider (with the service's name) becomes the process's
global one; FastAPI (the HTTP request), DBOS (workflows and steps, the sandbox tool calls
among them) and pydantic-ai (the agent run, model requests, tool calls) all write to it, and a
span started in one is the parent of those the next one starts in the same task: HTTP →
workflow → model → tool → sandbox step.
"""

from __future__ import annotations

import threading
from typing import Any

TRACES_PATH = "/v1/traces"
_lock = threading.Lock()
_provider: Any = None


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: OTLP/HTTP's ``/v1/traces`` under a base URL (as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read); a URL that already names it is kept."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def configure(endpoint: str | None, service_name: str) -> bool:
    """Install the exporting tracer provider once per process when ``endpoint`` is set;
    returns whether traces are exported."""
    global _provider
    if endpoint is None:
        return _provider is not None
    with _lock:
        if _provider is None:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
            provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)))
            )
            trace.set_tracer_provider(provider)
            _provider = provider
    return True


def enabled() -> bool:
    return _provider is not None


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (at shutdown)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)
