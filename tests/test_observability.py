"""Metrics, logs and traces (README, Operating), seen from outside: a real ``serve`` over real
HTTP with real sandboxes, the scripted stand-in model, and a stand-in OTLP/HTTP collector
that records what the service exports (decoded with the OTLP protobuf classes the exporter
ships with). The settings that only shape one route (/metrics off, or behind a token) are
checked on the in-process app.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    CLI,
    Backend,
    Server,
    api_app,
    free_port,
    service_env,
    start_server,
    stop_server,
)
from tests.support.model_server import Call, ModelServer, Text, ToolCalls
from tests.support.served import create_account, serve_with_stand_in
from tests.support.served_sessions import new_active_session

SERVICE_NAME = "agent-sessions-under-test"


# --- a stand-in OTLP/HTTP collector ----------------------------------------------------------


@dataclass
class Collector:
    """Records every ``POST /v1/traces`` (OTLP/HTTP, protobuf) and answers 200."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[dict[str, Any]]:
        """Every span received: name, kind, ids, attributes and its resource's service name."""
        out = []
        with self.lock:
            bodies = list(self.bodies)
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append(
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "trace": span.trace_id.hex(),
                                "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "service": resource.get("service.name"),
                                "attributes": {
                                    a.key: a.value.string_value or a.value.int_value
                                    for a in span.attributes
                                },
                            }
                        )
        return out


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    received = Collector(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/v1/traces":
                with received.lock:
                    received.bodies.append(body)
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- the service under test ------------------------------------------------------------------


@dataclass
class Served:
    server: Server
    key: str
    model: ModelServer

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def log_lines(self) -> list[str]:
        """The log's complete lines (the server may be writing the last one)."""
        return self.server.log.read_text().split("\n")[:-1]


@pytest.fixture(scope="module")
def served(collector: Collector) -> Iterator[Served]:
    """``serve`` with JSON logs, the access log and OTLP traces on; sandboxes; the stand-in."""
    with serve_with_stand_in(
        "agent-sessions-obs-",
        uid_offset=60,
        AGENT_SESSIONS_LOG_FORMAT="json",
        AGENT_SESSIONS_ACCESS_LOG="true",
        AGENT_SESSIONS_OTLP_ENDPOINT=collector.url,
        AGENT_SESSIONS_OTEL_SERVICE_NAME=SERVICE_NAME,
        OTEL_BSP_SCHEDULE_DELAY="100",  # the span batches leave every 0.1 s
    ) as (srv, model):
        yield Served(srv, create_account(srv, "obs"), model)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Turn:
    session_id: str
    chat_id: str
    run_id: str
    before: Samples
    """The metrics just before the turn was posted."""


@pytest.fixture(scope="module")
def turn(served: Served) -> Turn:
    """One headless turn that runs ``bash`` once and answers, run to its end."""
    url = served.server.url
    sid = new_active_session(url, served.headers)
    chats = httpx.get(f"{url}/api/sessions/{sid}/chats", headers=served.headers).json()
    chat_id = chats["chats"][0]["id"]
    name = f"obs-{uuid.uuid4().hex[:8]}"
    served.model.script(name, [ToolCalls([Call("bash", {"command": "echo hi"})]), Text("done")])
    before = _scrape(url)
    r = httpx.post(
        f"{url}/api/chat/runs",
        json={"sessionId": sid, "chatId": chat_id, "prompt": "run it", "model": f"openai/{name}"},
        headers=served.headers,
    )
    assert r.status_code == 202, r.text
    run_id = r.json()["runId"]
    deadline = time.monotonic() + 120
    while True:
        run = httpx.get(f"{url}/api/chat/runs/{run_id}", headers=served.headers).json()
        if run["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert run["status"] == "completed", run
    # The run reads completed once its end is stored; the workflow counts and logs it just
    # after: wait for that line (written after the metrics are updated).
    while not any(run_id in line and "turn finished" in line for line in served.log_lines()):
        assert time.monotonic() < deadline, served.log_lines()[-20:]
        time.sleep(0.1)
    return Turn(sid, chat_id, run_id, before)


def _scrape(url: str) -> Samples:
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_count_the_turn_its_tool_call_model_requests_and_http(
    served: Served, turn: Turn
) -> None:
    after = _scrape(served.server.url)  # no API key: a scraper is not an account
    before = turn.before

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("agent_sessions_turns_started_total") == 1
    assert grew("agent_sessions_turns_finished_total", status="completed") == 1
    assert grew("agent_sessions_turn_duration_seconds_count", status="completed") == 1
    assert grew("agent_sessions_turn_steps_total") == 2
    assert grew("agent_sessions_tool_calls_total", tool="bash", outcome="ok") == 1
    assert grew("agent_sessions_tool_call_duration_seconds_count", tool="bash") == 1
    model = [k for k in after if k[0] == "agent_sessions_model_requests_total"]
    assert sum(after[k] - before.get(k, 0.0) for k in model) == 2  # a tool call, then the text
    tokens = [k for k in after if k[0] == "agent_sessions_model_tokens_total"]
    assert all(dict(k[1])["kind"] in ("input", "output", "cache_read") for k in tokens)
    assert sum(after[k] - before.get(k, 0.0) for k in tokens) > 0
    posted = {"route": "/api/chat/runs", "method": "POST", "status": "202"}
    assert grew("agent_sessions_http_requests_total", **posted) == 1
    # routes are labelled by template, the hot direct routes too; never by the raw path
    routes = {
        dict(k[1]).get("route") for k in after if k[0] == "agent_sessions_http_requests_total"
    }
    assert "/api/chat/runs/{runId}" in routes
    assert "/api/sessions/{sessionId}" in routes  # served by api/direct.py
    assert not any(turn.run_id in (r or "") or turn.session_id in (r or "") for r in routes)
    assert _value(after, "agent_sessions_sandboxes", state="active") >= 1
    assert ("agent_sessions_runs_queued", ()) in after
    assert ("agent_sessions_turns_running", ()) in after
    # the session's provisioning, before the turn
    ops = "agent_sessions_lifecycle_operations_total"
    assert _value(after, ops, operation="provision", outcome="active") >= 1
    durations = "agent_sessions_lifecycle_operation_duration_seconds_count"
    assert _value(after, durations, operation="provision") >= 1


# --- logs ------------------------------------------------------------------------------------


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """The log's lines from its first JSON one on, each parsed (a line that is not JSON fails).
    Before it only ``serve``'s own start-up hint is printed (no accounts yet), not a log line."""
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    return [json.loads(line) for line in lines[first:] if line.strip()]


def test_json_log_lines_carry_the_ids(served: Served, turn: Turn) -> None:
    records = _json_lines(served.log_lines())
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    finished = [r for r in records if r["msg"].startswith("turn finished: completed")]
    assert len(finished) == 1, [r["msg"] for r in records]
    line = finished[0]
    assert line["level"] == "INFO"
    assert (line["run_id"], line["session_id"], line["chat_id"]) == (
        turn.run_id,
        turn.session_id,
        turn.chat_id,
    )
    assert "2 steps" in line["msg"] and "input and" in line["msg"]
    created = [r for r in records if r["msg"] == "session created"]
    assert any(r.get("session_id") == turn.session_id for r in created)
    provisioned = [r for r in records if r["msg"].startswith("session provisioned in ")]
    assert any(r.get("session_id") == turn.session_id for r in provisioned)
    # the access log: one line per request, with the ids of its path
    access = [r for r in records if r["logger"] == "agent_sessions.access"]
    polled = [r for r in access if r["msg"].startswith(f"GET /api/chat/runs/{turn.run_id} 200 ")]
    assert polled and all(r["run_id"] == turn.run_id for r in polled)
    # uvicorn's own lines come in the same format
    assert any(r["logger"].startswith("uvicorn") for r in records)


def test_log_level_is_respected(tmp_path: Path) -> None:
    """At WARNING neither the access log nor uvicorn's start-up lines (INFO) are written."""
    srv = start_server(
        tmp_path / "serve-data",
        AGENT_SESSIONS_LOG_LEVEL="WARNING",
        AGENT_SESSIONS_LOG_FORMAT="json",
        AGENT_SESSIONS_ACCESS_LOG="true",
    )
    try:
        headers = {"x-api-key": create_account(srv, "obs")}
        assert httpx.get(f"{srv.url}/api/sessions", headers=headers).status_code == 200
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    finally:
        stop_server(srv)
    lines = srv.log.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in records), records
    assert not [line for line in lines if "INFO" in line or "GET /" in line], lines


def test_text_logs_at_info_by_default(tmp_path: Path) -> None:
    """The default: text lines at INFO, uvicorn's in the same format, no access log."""
    srv = start_server(tmp_path / "serve-data")
    try:
        headers = {"x-api-key": create_account(srv, "obs")}
        assert httpx.get(f"{srv.url}/api/sessions", headers=headers).status_code == 200
    finally:
        stop_server(srv)
    lines = srv.log.read_text().splitlines()
    started = [line for line in lines if "Application startup complete" in line]
    assert len(started) == 1
    assert re.fullmatch(r"\S+ \S+ INFO uvicorn\.error Application startup complete\.", started[0])
    assert not [line for line in lines if "GET /api/sessions" in line]


# --- /metrics settings (the in-process app) ----------------------------------------------------


def test_metrics_can_be_turned_off(backend: Backend) -> None:
    with TestClient(api_app(backend, metrics_enabled=False)) as client:
        assert client.get("/metrics").status_code == 404


def test_metrics_behind_a_token(backend: Backend) -> None:
    with TestClient(api_app(backend, metrics_token="s3cret")) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert "agent_sessions_http_requests_total" in right.text
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


# --- a worker's metrics (worker --metrics-port) --------------------------------------------------


@contextlib.contextmanager
def _worker(data_dir: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """``agent-sessions worker --metrics-port`` on SQLite, once it says it runs (its metrics are
    bound before that): their URL and the worker's log. As for ``serve``, a port another test
    took in between is retried."""
    full_env = service_env(data_dir, **env)
    for _ in range(5):
        port = free_port()
        log = data_dir / f"worker-{port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [CLI, "worker", "--metrics-port", str(port)],
                env=full_env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and b"running; Ctrl-C to stop" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            if proc.poll() is None:
                yield url, log
                proc.terminate()
                assert proc.wait(timeout=30) == 0, log.read_text()
                return
            assert "address already in use" in log.read_text(), log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    raise RuntimeError("worker found no free metrics port in five tries")


def test_a_worker_serves_its_metrics_behind_the_token(tmp_path: Path) -> None:
    """The same registry as ``serve``'s /metrics (the turn families, the database gauges), and
    the same token."""
    token = {"AGENT_SESSIONS_METRICS_TOKEN": "s3cret"}
    with _worker(tmp_path / "worker-data", **token) as (url, log):
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer nope"}).status_code == 401
        r = httpx.get(url, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in (
        "agent_sessions_turns_started",
        "agent_sessions_turns_recovered",
        "agent_sessions_turns_finished",
        "agent_sessions_turn_duration_seconds",
        "agent_sessions_turn_steps",
        "agent_sessions_turns_running",
        "agent_sessions_model_requests",
        "agent_sessions_tool_calls",
        "agent_sessions_lifecycle_operations",
    ):
        assert name in families, sorted(families)
    assert families["agent_sessions_turns_started"].samples[0].value == 0
    # the database's counts, read for the scrape as serve reads them
    assert families["agent_sessions_runs_queued"].samples[0].value == 0
    active = [
        s for s in families["agent_sessions_sandboxes"].samples if s.labels["state"] == "active"
    ]
    assert [s.value for s in active] == [0]
    assert "GET /metrics" not in log.read_text()  # no line per scrape


def test_a_worker_refuses_a_metrics_port_with_metrics_off(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CLI, "worker", "--metrics-port", str(free_port())],
        env=service_env(tmp_path, AGENT_SESSIONS_METRICS_ENABLED="false"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "agent-sessions: --metrics-port is given but AGENT_SESSIONS_METRICS_ENABLED is false"
    ]


# --- traces ----------------------------------------------------------------------------------


def test_a_turn_is_traced_from_the_http_request_to_the_sandbox(
    served: Served, turn: Turn, collector: Collector
) -> None:
    """The request that started the turn, its workflow, its model requests, its tool call and
    the sandbox step under it: one trace, exported over OTLP/HTTP with the service's name."""

    def trace_of_turn() -> list[dict[str, Any]]:
        spans = collector.spans()
        starts = [
            s
            for s in spans
            if s["name"] == "POST /api/chat/runs" and s["attributes"].get("http.route")
        ]
        if not starts:
            return []
        return [s for s in spans if s["trace"] == starts[-1]["trace"]]

    wanted = ("POST /api/chat/runs", "agent_turn", "tool.bash")
    deadline = time.monotonic() + 30
    while True:
        spans = trace_of_turn()
        names = [s["name"] for s in spans]
        if all(w in names for w in wanted) and any("bash" in n and n != "tool.bash" for n in names):
            break
        assert time.monotonic() < deadline, sorted(set(names)) or collector.spans()[:20]
        time.sleep(0.2)
    assert {s["service"] for s in spans} == {SERVICE_NAME}
    by_id = {s["id"]: s for s in spans}

    def ancestors(span: dict[str, Any]) -> list[str]:
        out = []
        while span["parent"] in by_id:
            span = by_id[span["parent"]]
            out.append(span["name"])
        return out

    step = next(s for s in spans if s["name"] == "tool.bash")
    chain = ancestors(step)
    assert "agent_turn" in chain and chain[-1] == "POST /api/chat/runs", chain
    model = [s for s in spans if s["name"].startswith("chat ")]
    assert len(model) == 2, sorted(set(names))  # pydantic-ai's spans of the two model requests
    assert all("agent_turn" in ancestors(s) for s in model)
