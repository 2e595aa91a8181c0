"""Every Prometheus metric of the service, in one place (README, Operating).

The code that sees an event updates its metric once per event: an HTTP request, a turn, a model
request, a tool call, a lifecycle operation. Nothing is counted per streamed chunk or token (a
turn is ~100 chunks and a turn's CPU is what bounds a box's capacity, bench/capacity.py).
Counters are this process's; the two database gauges (:func:`set_database_gauges`) are the
database's, the same on every process, filled when ``/metrics`` is scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "render"]

# no ``*_created`` series beside every counter and histogram (half the output, no use here)
disable_created_metrics()  # type: ignore[no-untyped-call]
PREFIX = "agent_sessions_"
_SHORT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LONG = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

HTTP_REQUESTS = Counter(
    PREFIX + "http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    PREFIX + "http_request_duration_seconds",
    "Seconds from a request's arrival to its response's headers (a stream's length is not its "
    "latency).",
    ["route", "method"],
    buckets=_SHORT,
)

TURNS_STARTED = Counter(PREFIX + "turns_started_total", "Agent turns started in this process.")
TURNS_RECOVERED = Counter(
    PREFIX + "turns_recovered_total",
    "Agent turns executed again after a crash or restart (each also counts as started).",
)
TURNS_FINISHED = Counter(
    PREFIX + "turns_finished_total", "Agent turns finished, by final status.", ["status"]
)
TURN_DURATION = Histogram(
    PREFIX + "turn_duration_seconds",
    "Seconds from a turn's start to its end, by final status.",
    ["status"],
    buckets=_LONG,
)
TURN_STEPS = Counter(PREFIX + "turn_steps_total", "Model steps of the finished turns.")

MODEL_REQUESTS = Counter(
    PREFIX + "model_requests_total",
    "Model requests (one per agent step, subagents' included), by model and outcome.",
    ["model", "outcome"],
)
MODEL_LATENCY = Histogram(
    PREFIX + "model_request_duration_seconds",
    "Seconds a model request took, its whole streamed response included.",
    ["model"],
    buckets=_SHORT,
)
MODEL_TOKENS = Counter(
    PREFIX + "model_tokens_total",
    "Tokens the model providers reported, by model and kind (input, output, cache_read).",
    ["model", "kind"],
)

TOOL_CALLS = Counter(
    PREFIX + "tool_calls_total",
    "Tool calls run, by tool and outcome (ok, failed, retried, error).",
    ["tool", "outcome"],
)
TOOL_LATENCY = Histogram(
    PREFIX + "tool_call_duration_seconds", "Seconds a tool call took.", ["tool"], buckets=_SHORT
)

LIFECYCLE = Counter(
    PREFIX + "lifecycle_operations_total",
    "Sandbox lifecycle workflows run (provision, hibernate, restore, archive), by outcome.",
    ["operation", "outcome"],
)
LIFECYCLE_DURATION = Histogram(
    PREFIX + "lifecycle_operation_duration_seconds",
    "Seconds a sandbox lifecycle workflow took, by operation.",
    ["operation"],
    buckets=_LONG,
)

SANDBOXES = Gauge(
    PREFIX + "sandboxes",
    "Sessions by their sandbox's lifecycle state, from the database (the same on every process).",
    ["state"],
)
RUNS_QUEUED = Gauge(
    PREFIX + "runs_queued",
    "Turns accepted and not started yet, from the database (the same on every process).",
)
TURNS_RUNNING = Gauge(PREFIX + "turns_running", "Agent turns this process is running now.")

MODEL_LABELS_MAX = 64
"""Distinct ``model`` label values kept; the rest count as ``other``. A client names the model
of its chat, so the label is bounded rather than trusted."""
_models: set[str] = set()
_models_lock = threading.Lock()


def model_label(model_id: str) -> str:
    """``model_id`` as a label value, or ``other`` once :data:`MODEL_LABELS_MAX` are in use."""
    if model_id in _models:
        return model_id
    with _models_lock:
        if len(_models) < MODEL_LABELS_MAX:
            _models.add(model_id)
            return model_id
    return "other"


LIFECYCLE_STATES = ("provisioning", "active", "hibernating", "hibernated", "restoring", "failed")


def set_database_gauges(by_state: Mapping[str | None, int], queued: int) -> None:
    """The database's counts, as read for one scrape: every known state is reported, at 0 when
    no session is in it, so that a state emptied since the last scrape does not keep its
    value. ``archived`` sessions count under their own state too."""
    states = {s: 0 for s in LIFECYCLE_STATES}
    for state, count in by_state.items():
        states[state or "none"] = count
    for state, count in states.items():
        SANDBOXES.labels(state).set(count)
    RUNS_QUEUED.set(queued)


def render() -> bytes:
    """Every metric of this process in Prometheus' text format."""
    return generate_latest(REGISTRY)
