"""Agent turns end to end: the real app and DBOS, real bubblewrap sandboxes, and the scripted
stand-in model server (``tests/support/model_server.py``) over real HTTP.

The model is the only stand-in: the agent reaches it through pydantic-ai's OpenAI provider
with ``OPENAI_BASE_URL`` pointing at the local server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent_sessions.api import create_app
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.settings import Settings
from tests.conftest import Account, Backend, make_account, make_backend, traversable_tmpdir
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import ModelServer, ScriptStep, run_model_server


@pytest.fixture(scope="session")
def model_server() -> Iterator[ModelServer]:
    with run_model_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A database per test (starting the service reconciles every unfinished run in it)."""
    with make_backend(request.param, tmp_path / "db") as fresh:
        yield fresh


@pytest.fixture
def schema_walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the tools whose JSON schema pydantic-ai's transformer walks (a spy)."""
    import pydantic_ai.models as pai_models

    walks: list[str] = []
    real = pai_models._customize_tool_def

    def counting(transformer: Any, tool_def: Any) -> Any:
        walks.append(tool_def.name)
        return real(transformer, tool_def)

    monkeypatch.setattr(pai_models, "_customize_tool_def", counting)
    return walks


def parse_sse(raw: str) -> list[dict[str, Any]]:
    """SSE body → chunks; asserts the framing (``data:`` lines, ``[DONE]`` last)."""
    events = [e for e in raw.split("\n\n") if e.strip()]
    assert events, "empty stream"
    assert events[-1] == "data: [DONE]", events[-1]
    chunks = []
    for event in events[:-1]:
        assert event.startswith("data: "), event
        chunks.append(json.loads(event[len("data: ") :]))
    return chunks


@dataclass
class Agents:
    client: TestClient
    account: Account
    settings: Settings
    backend: Backend
    model: ModelServer

    def script(self, steps: list[ScriptStep], provider: str = "openai") -> str:
        """Register a script under a fresh name; returns the model id to use (the stand-in
        speaks both providers' protocols)."""
        name = f"script-{uuid.uuid4().hex[:10]}"
        self.model.script(name, steps)
        return f"{provider}/{name}"

    def new_session(self, **body: Any) -> dict[str, Any]:
        r = self.client.post("/api/sessions", json=body, headers=self.account.headers)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        self.wait_active(out["session"]["id"])
        return out

    def wait_active(self, sid: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self.client.get(f"/api/sessions/{sid}", headers=self.account.headers)
            state = r.json()["session"]["lifecycleState"]
            if state == "active":
                return
            assert state in ("provisioning", "restoring"), r.json()
            assert time.monotonic() < deadline, f"{sid} stuck in {state}"
            time.sleep(0.05)

    def body(
        self, session_id: str, chat_id: str, text: str, message_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        message = {
            "id": message_id or f"u-{uuid.uuid4().hex[:8]}",
            "role": "user",
            "parts": [{"type": "text", "text": text}],
        }
        return {
            "id": chat_id,
            "sessionId": session_id,
            "messages": [message],
            "trigger": "submit-message",
            "messageId": None,
            **extra,
        }

    def turn(
        self, session_id: str, chat_id: str, text: str, **extra: Any
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Send a message and read the whole stream; returns the chunks and headers."""
        with self.client.stream(
            "POST",
            "/api/chat",
            json=self.body(session_id, chat_id, text, **extra),
            headers=self.account.headers,
        ) as r:
            raw = r.read().decode()
            assert r.status_code == 200, raw
            return parse_sse(raw), dict(r.headers)

    def chat(self, session_id: str, chat_id: str) -> dict[str, Any]:
        r = self.client.get(
            f"/api/sessions/{session_id}/chats/{chat_id}", headers=self.account.headers
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/chat/runs/{run_id}", headers=self.account.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def wait_run(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in ("completed", "failed", "cancelled"):
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
            time.sleep(0.05)


AgentsFactory = Callable[..., Agents]


@pytest.fixture
def sandbox_data_dir() -> Iterator[Path]:
    with traversable_tmpdir("agent-sessions-agent-") as path:
        yield path


@pytest.fixture
def agents(
    backend: Backend, tmp_path: Path, sandbox_data_dir: Path, model_server: ModelServer
) -> Iterator[AgentsFactory]:
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    stack = ExitStack()

    def make(**overrides: Any) -> Agents:
        values: dict[str, Any] = {
            "data_dir": sandbox_data_dir,
            "executor_id": f"test-{uuid.uuid4().hex[:12]}",
            "sandbox_uid_base": UID_BASE + 50,
            "sandbox_uid_count": 50,
            "openai_api_key": "test-key",
            "openai_base_url": model_server.base_url,
        }
        values.update(overrides)
        settings = backend.settings(**values)
        app = create_app(settings, db=backend.db, lifecycle=Lifecycle(settings, backend.db))
        client = stack.enter_context(TestClient(app))
        return Agents(client, make_account(backend.db), settings, backend, model_server)

    yield make
    try:
        if stack._exit_callbacks:  # a service was started
            _let_finished_turns_wind_up(backend)
    finally:
        stack.close()


def _let_finished_turns_wind_up(backend: Backend, timeout: float = 30.0) -> None:
    """Before the service stops, let the work that the test no longer waits for finish: a
    turn's last step after its stream ended (the cached diff's refresh, a sandbox exec) and
    lifecycle transitions started by the test (an archive's hibernation). DBOS stops its
    event loop with such a step suspended mid-exec, and the exec's subprocess then warns when
    collected, in whatever test runs next. Watchers (they sleep durably) and turns still
    running (a test may leave one waiting) are not waited for: in production either case is
    a step that DBOS runs again after a restart."""
    from dbos import DBOS
    from sqlalchemy import select

    from agent_sessions.store.models import ChatRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with backend.db.read() as s:
            runs = {r.id: r.status for r in s.execute(select(ChatRun.id, ChatRun.status))}
        pending = [
            w.workflow_id
            for w in DBOS.list_workflows(status="PENDING")
            if not w.workflow_id.startswith("watch-")
            and runs.get(w.workflow_id, "completed") in ENDED
        ]
        if not pending:
            return
        time.sleep(0.05)


ENDED = ("completed", "failed", "cancelled")
