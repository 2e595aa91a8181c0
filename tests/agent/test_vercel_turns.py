"""A turn whose sandbox is on Vercel: the service, its lifecycle and the turn's tools reach the
labelled stand-in of Vercel's API over real HTTP (``AGENT_SESSIONS_VERCEL_API_URL``), through
the real SDK. Failures injected into that API are retried inside the turn's tool calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sessions.sandbox._vercel_fake import FakeVercelThread, Fault, bwrap_available
from tests.agent.conftest import AgentsFactory
from tests.agent.protocol import text_of, tool_outputs
from tests.support.model_server import Call, Text, ToolCalls


@pytest.fixture
def vercel(sandbox_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVercelThread]:
    if not bwrap_available():
        pytest.skip("VERCEL STAND-IN SKIPPED: it runs commands under bwrap, which is missing")
    fake = FakeVercelThread(sandbox_data_dir / "vercel-api")
    assert fake.api is not None
    monkeypatch.delenv("VERCEL_OIDC_TOKEN", raising=False)
    monkeypatch.setenv("VERCEL_TOKEN", fake.api.token)
    monkeypatch.setenv("VERCEL_TEAM_ID", fake.api.team_id)
    monkeypatch.setenv("VERCEL_PROJECT_ID", fake.api.project_id)
    try:
        yield fake
    finally:
        fake.close()


def test_a_turn_on_vercel_rides_out_a_flaky_api(
    agents: AgentsFactory, vercel: FakeVercelThread
) -> None:
    api = vercel.api
    assert api is not None
    h = agents(vercel_api_url=api.base_url, vercel_plan="pro")
    model = h.script(
        [
            ToolCalls([Call("bash", {"command": "echo from-vercel > f && cat f"})]),
            ToolCalls([Call("read", {"filePath": "f"})]),
            Text("Done."),
        ]
    )
    created = h.new_session(sandboxType="vercel")
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    assert sid in api.sandboxes and api.sandboxes[sid].spec["persistent"] is True
    # Vercel refuses the next two commands, then rate-limits the next download.
    busy = Fault("status", path=r"/cmd$", method="POST", status=503, times=2)
    limited = Fault("status", path=r"fs/read$", status=429, retry_after=0.2)
    vercel.call(api.inject, busy)
    vercel.call(api.inject, limited)
    chunks, headers = h.turn(sid, chat_id, "write f and read it back", model=model)
    outputs = tool_outputs(chunks)
    assert outputs["call_0_0"]["output"]["exitCode"] == 0
    assert outputs["call_0_0"]["output"]["stdout"] == "from-vercel\n"
    assert outputs["call_1_0"]["output"].startswith("1: from-vercel")
    assert text_of(chunks) == "Done."
    run = h.wait_run(headers["x-workflow-run-id"])
    assert run["status"] == "completed" and run["error"] is None
    assert (busy.hits, limited.hits) == (2, 1)  # each failure was met, and ridden out
