"""Three ``serve`` processes as hosts on one PostgreSQL database, local sandboxes, snapshots in
S3 (moto's server over real HTTP: the S3 stand-in), the scripted model stand-in.

Requests for a session go to the host of its sandbox whichever process receives them; a second
process with a host's executor id is refused; when one host is killed for good in the middle
of a turn, the others take it over within the timeout: its turn ends ``failed`` with what it
streamed kept, its sessions come back from their snapshot on another host (and say from
which) or fail visibly, and nothing its turn did runs again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import parse_sse
from tests.agent.protocol import tool_outputs
from tests.conftest import (
    Backend,
    Server,
    make_account,
    make_backend,
    start_server,
    stop_server,
    traversable_tmpdir,
)
from tests.sandbox.conftest import local_unavailable_reason
from tests.support.model_server import Call, ModelServer, Text, ToolCalls, run_model_server
from tests.support.waiting import until

pytestmark = pytest.mark.slow

AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
DEAD_AFTER = 25
"""Seconds of silence before a host is taken over. A restarted host must register within
this (its imports and start-up on a loaded machine took longer than 10 s: the full suite once
had A, restarted "at once", taken over, its recovered turn then failed)."""
SCALE_UID_BASE = 900_000 + (os.getpid() % 5000) * 40
"""Host uids of this test's sandboxes: above every test's ``UID_BASE`` window (uids are
claimed host-wide, and other tests of this worker may still hold theirs)."""


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    """A PostgreSQL database of this test's own (several processes share PostgreSQL only;
    SQLite serves one: refused, tested in tests/lifecycle/test_hosts.py). Not the worker's
    shared one: its hosts would reconcile what other tests left there (sessions still
    provisioning), and take over those tests' processes."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with make_backend("postgres", tmp_path / "pg") as backend:
        yield backend


@pytest.fixture
def s3() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, **_boto(AWS)).create_bucket(Bucket="snaps")
    try:
        yield url
    finally:
        server.stop()


def _boto(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with run_model_server() as server:
        yield server


def _env(name: str, slot: int, s3: str, model: ModelServer) -> dict[str, str]:
    return {
        **AWS,
        "AGENT_SESSIONS_EXECUTOR_ID": name,
        "AGENT_SESSIONS_SNAPSHOT_STORE": "s3",
        "AGENT_SESSIONS_S3_BUCKET": "snaps",
        "AGENT_SESSIONS_S3_ENDPOINT_URL": s3,
        "AGENT_SESSIONS_HOST_HEARTBEAT_SECONDS": "1",
        "AGENT_SESSIONS_HOST_DEAD_AFTER_SECONDS": str(DEAD_AFTER),
        "AGENT_SESSIONS_SANDBOX_UID_BASE": str(SCALE_UID_BASE + 10 * slot),
        "AGENT_SESSIONS_SANDBOX_UID_COUNT": "10",  # a test's own database: two or three each
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": model.base_url,
    }


def _state(srv: Server, sid: str, h: dict[str, str]) -> dict[str, Any]:
    session: dict[str, Any] = httpx.get(f"{srv.url}/api/sessions/{sid}", headers=h).json()[
        "session"
    ]
    return session


def _turn(srv: Server, sid: str, chat_id: str, model: str, h: dict[str, str], text: str) -> str:
    """Send a message and read the whole response; returns its raw SSE text."""
    body = {
        "id": chat_id,
        "sessionId": sid,
        "model": f"openai/{model}",
        "messages": [{"id": f"u-{time.monotonic_ns()}", "role": "user",
                      "parts": [{"type": "text", "text": text}]}],
    }  # fmt: skip
    with httpx.stream("POST", f"{srv.url}/api/chat", json=body, headers=h, timeout=120) as r:
        assert r.status_code == 200, r.read()
        return r.read().decode()


def _wait_active(srv: Server, sid: str, h: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while (state := _state(srv, sid, h))["lifecycleState"] != "active":
        why = (state["lifecycleState"], state["lifecycleError"], _log_tail(srv))
        assert state["lifecycleState"] in ("provisioning", "restoring"), why
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def _log_tail(srv: Server) -> str:
    try:
        return "\n".join(srv.log.read_text(errors="replace").splitlines()[-30:])
    except OSError as err:
        return f"(no log: {err})"


def _run(srv: Server, run_id: str, h: dict[str, str]) -> dict[str, Any]:
    run: dict[str, Any] = httpx.get(f"{srv.url}/api/chat/runs/{run_id}", headers=h).json()
    return run


def _chat(srv: Server, sid: str, chat_id: str, h: dict[str, str]) -> dict[str, Any]:
    chat: dict[str, Any] = httpx.get(
        f"{srv.url}/api/sessions/{sid}/chats/{chat_id}", headers=h
    ).json()
    return chat


def _until_tool_call(
    srv: Server,
    sid: str,
    chat_id: str,
    model: str,
    h: dict[str, str],
    *,
    kill: Server,
    body: dict[str, Any] | None = None,
) -> str:
    """Send a message through ``srv`` and kill -9 ``kill`` once a tool call is announced;
    returns the run id."""
    body = body or {
        "id": chat_id, "sessionId": sid, "model": f"openai/{model}",
        "messages": [{"id": f"u-{time.monotonic_ns()}", "role": "user",
                      "parts": [{"type": "text", "text": "go"}]}],
    }  # fmt: skip
    seen = ""
    with httpx.stream("POST", f"{srv.url}/api/chat", json=body, headers=h, timeout=60) as r:
        run_id = r.headers["x-workflow-run-id"]
        try:
            for piece in r.iter_text():
                seen += piece
                if '"tool-input-available"' in seen:
                    kill.process.kill()
                    kill.process.wait(10)
        except httpx.HTTPError:
            pass
    assert kill.process.returncode == -9, seen[-2000:]
    return run_id


def test_three_hosts_route_refuse_and_survive_losing_one(
    pg: Backend, tmp_path: Path, s3: str, model: ModelServer
) -> None:
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        for i, name in enumerate(("host-a", "host-b", "host-c")):
            data = stack.enter_context(traversable_tmpdir(f"agent-sessions-{name}-"))
            servers.append(start_server(data, pg.url, **_env(name, i, s3, model)))
            stack.callback(lambda i=i: stop_server(servers[i]))
        _scenario(servers, pg, tmp_path, s3, model)


def _scenario(
    servers: list[Server], pg: Backend, tmp_path: Path, s3: str, model: ModelServer
) -> None:
    if True:
        a, b, c = servers
        h = make_account(pg.db).headers

        # --- a second process with a live host's executor id is refused, in one line
        refused = subprocess.run(
            [sys.executable, "-m", "agent_sessions", "serve", "--port", "1"],
            env={**os.environ, **_env("host-b", 2, s3, model),
                 "AGENT_SESSIONS_DATA_DIR": str(tmp_path / "dup"),
                 "AGENT_SESSIONS_DATABASE_URL": pg.url},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert "executor id 'host-b' is in use by a live process" in lines[-1], refused.stderr
        assert "Traceback" not in refused.stderr

        # --- two sessions made on A: their sandboxes live there
        made = [httpx.post(f"{a.url}/api/sessions", json={}, headers=h).json() for _ in (1, 2)]
        s1, s2 = (m["session"]["id"] for m in made)
        chat1 = made[0]["chat"]["id"]
        for sid in (s1, s2):
            _wait_active(a, sid, h)
            assert _state(a, sid, h)["sandboxState"]["host"] == "host-a"

        # --- whichever process is asked, the work happens on A
        put = httpx.put(
            f"{c.url}/api/sessions/{s1}/files/content", params={"path": "kept.txt"},
            content=b"from before the snapshot\n", headers=h,
        )  # fmt: skip
        assert put.status_code < 300, put.text
        got = httpx.get(
            f"{b.url}/api/sessions/{s1}/files/content", params={"path": "kept.txt"},
            headers={**h, "origin": "https://app.example"},
        )  # fmt: skip
        assert got.status_code == 200, got.text
        assert got.headers.get_list("access-control-allow-origin") == ["*"]  # once, not twice
        assert got.json()["content"] == "from before the snapshot\n"
        hib = httpx.post(f"{b.url}/api/sessions/{s1}/sandbox/hibernate", headers=h, timeout=120)
        assert hib.status_code == 200, hib.text
        assert _state(a, s1, h)["lifecycleState"] == "hibernated"
        resumed = httpx.post(f"{a.url}/api/sessions/{s1}/sandbox/resume", headers=h, timeout=120)
        assert resumed.status_code == 200, resumed.text
        assert _state(a, s1, h)["sandboxState"]["host"] == "host-a"  # restored where asked

        # --- A killed and at once restarted under its id: DBOS recovers its turn, and it goes
        # on there (B and C, whose sandboxes these are not, never take it)
        chat2 = made[1]["chat"]["id"]
        model.script("quick", [ToolCalls([Call("bash", {"command": "sleep 2; echo done"})]),
                               Text("ok")])  # fmt: skip
        run2 = _until_tool_call(c, s2, chat2, "quick", h, kill=a)
        a = servers[0] = start_server(a.log.parent, pg.url, **_env("host-a", 0, s3, model))
        until("the recovered turn ended", lambda: _run(b, run2, h)["status"] != "running", 60)
        assert _run(b, run2, h)["status"] == "completed", _run(b, run2, h)
        parts = _chat(b, s2, chat2, h)["messages"][-1]["parts"]
        bash = [p for p in parts if p.get("type") == "tool-bash"]
        assert bash and bash[0]["output"]["stdout"].strip() == "done", parts

        # --- a turn sent to B runs on A; kill -9 A while its tool call runs
        model.script("long", [ToolCalls([Call("bash", {"command": "sleep 60"})]), Text("late")])
        body = {
            "id": chat1, "sessionId": s1, "model": "openai/long",
            "messages": [{"id": "u-long", "role": "user",
                          "parts": [{"type": "text", "text": "take your time"}]}],
        }  # fmt: skip
        run_id = _until_tool_call(b, s1, chat1, "long", h, kill=a, body=body)
        killed_at = time.monotonic()

        # --- within the timeout B or C took A over, once
        def ended() -> bool:
            run = httpx.get(f"{c.url}/api/chat/runs/{run_id}", headers=h).json()
            return bool(run["status"] == "failed")

        until("the lost turn ended", ended, DEAD_AFTER + 60)
        run = httpx.get(f"{c.url}/api/chat/runs/{run_id}", headers=h).json()
        assert "host-a" in run["error"] and "stopped responding" in run["error"]
        first = _state(b, s1, h)
        assert first["lifecycleState"] == "hibernated"
        assert "comes back from its snapshot of" in first["lifecycleError"]
        second = _state(b, s2, h)
        assert second["lifecycleState"] == "failed"
        assert "no snapshot" in second["lifecycleError"]
        assert time.monotonic() - killed_at < DEAD_AFTER + 60

        # --- the session is served by the others, from its snapshot; nothing ran twice
        # (the stand-in answers by the number of assistant messages: the lost turn left one)
        look = ToolCalls([Call("bash", {"command": "cat kept.txt"})])
        model.script("look", [Text("unused"), look, Text("found it")])
        raw = _turn(c, s1, chat1, "look", h, "what is there?")
        chunks = parse_sse(raw)
        outputs = list(tool_outputs(chunks).values())
        assert outputs and "from before the snapshot" in str(outputs[0]["output"]), raw[-2000:]
        assert _state(b, s1, h)["sandboxState"]["host"] == "host-c"
        assert len(model.requests("long")) == 1  # the lost turn was not continued anywhere
        chat = httpx.get(f"{b.url}/api/sessions/{s1}/chats/{chat1}", headers=h).json()
        roles = [m["role"] for m in chat["messages"]]
        assert roles[:2] == ["user", "assistant"] and roles.count("user") == 2  # all kept
        texts = str(chat["messages"])
        assert "take your time" in texts and "what is there?" in texts
        lost = chat["messages"][1]["parts"]  # what the lost turn streamed, stored by the taker
        calls = [p for p in lost if p.get("type") == "tool-bash"]
        assert calls and calls[0]["state"] == "output-error", lost
        assert "stopped before the call ended" in calls[0]["errorText"]

        # --- A comes back under its id: it serves again, and frees the sandboxes it had held
        boxes = a.log.parent / "sandboxes"

        def held() -> list[str]:  # a sandbox is named after its session (and a restore's number)
            return [p.name for p in boxes.iterdir() if p.name.startswith((s1, s2))]

        assert len(held()) == 2
        again = start_server(a.log.parent, pg.url, **_env("host-a", 0, s3, model))
        servers[0] = again
        assert held() == []
        got = httpx.get(
            f"{again.url}/api/sessions/{s1}/files/content", params={"path": "kept.txt"}, headers=h
        )
        assert got.status_code == 200 and got.json()["content"] == "from before the snapshot\n"


def test_a_lost_host_with_vercel_sandboxes_has_its_turn_finished_elsewhere(
    pg: Backend, s3: str, model: ModelServer, tmp_path: Path
) -> None:
    """Remote sandboxes belong to no host: the host that takes a lost one over resumes its
    pending workflows, and its turn goes on from its last completed step (the step in flight
    when it died runs again, as after any crash)."""
    from agent_sessions.sandbox._vercel_fake import FakeVercelThread, bwrap_available

    if not bwrap_available():
        pytest.skip("VERCEL STAND-IN SKIPPED: it runs commands under bwrap, which is missing")
    fake = FakeVercelThread(tmp_path / "vercel-api")
    api = fake.api
    assert api is not None
    vercel = {
        "AGENT_SESSIONS_SANDBOX_PROVIDER": "vercel", "AGENT_SESSIONS_VERCEL_API_URL": api.base_url,
        "AGENT_SESSIONS_VERCEL_PLAN": "pro", "VERCEL_TOKEN": api.token,
        "VERCEL_TEAM_ID": api.team_id, "VERCEL_PROJECT_ID": api.project_id,
    }  # fmt: skip
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        stack.callback(fake.close)
        for i, name in enumerate(("host-v1", "host-v2")):
            data = stack.enter_context(traversable_tmpdir(f"agent-sessions-{name}-"))
            servers.append(start_server(data, pg.url, **_env(name, i, s3, model), **vercel))
            stack.callback(lambda i=i: stop_server(servers[i]))
        a, b = servers
        h = make_account(pg.db).headers
        made = httpx.post(f"{a.url}/api/sessions", json={"sandboxType": "vercel"}, headers=h)
        sid, chat_id = made.json()["session"]["id"], made.json()["chat"]["id"]
        _wait_active(a, sid, h)
        model.script("v", [ToolCalls([Call("bash", {"command": "sleep 2; echo kept >> f; cat f"})]),
                           Text("finished elsewhere")])  # fmt: skip
        run_id = _until_tool_call(a, sid, chat_id, "v", h, kill=a)
        until("the turn finished on the other host", lambda: _run(b, run_id, h)["status"]
              not in ("queued", "running"), DEAD_AFTER + 60)  # fmt: skip
        run = _run(b, run_id, h)
        assert run["status"] == "completed", run
        parts = _chat(b, sid, chat_id, h)["messages"][-1]["parts"]
        assert "finished elsewhere" in str(parts)
        bash = [p for p in parts if p.get("type") == "tool-bash"]
        assert bash and bash[-1]["state"] == "output-available", parts
        assert "kept" in bash[-1]["output"]["stdout"]
        hosts = {row["executorId"]: row for row in _hosts(pg)}
        assert hosts["host-v1"]["state"] == "gone" and hosts["host-v1"]["takenOverBy"] == "host-v2"


def _hosts(pg: Backend) -> list[dict[str, Any]]:
    from agent_sessions.store import admin

    with pg.db.read() as s:
        return admin.hosts(s)
