"""A real app with the real DBOS lifecycle, in-process, over the fake sandbox provider.

The fake provider (no isolation, labelled as such in the library) keeps these tests fast; the
crash tests in ``test_crash.py`` run the real ``serve`` with the bubblewrap provider.
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
from agent_sessions.hooks import HookRunner
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.lifecycle.context import LifecycleContext
from agent_sessions.sandbox import SandboxProvider
from agent_sessions.sandbox.fake import FakeProvider
from agent_sessions.settings import Settings
from tests.conftest import Account, Backend, make_account, make_backend


@dataclass
class Harness:
    client: TestClient
    account: Account
    provider: SandboxProvider
    settings: Settings
    backend: Backend

    def create(self, **body: Any) -> dict[str, Any]:
        r = self.client.post("/api/sessions", json=body, headers=self.account.headers)
        assert r.status_code == 200, r.text
        return r.json()["session"]  # type: ignore[no-any-return]

    def session(self, sid: str) -> dict[str, Any]:
        r = self.client.get(f"/api/sessions/{sid}", headers=self.account.headers)
        assert r.status_code == 200, r.text
        return r.json()["session"]  # type: ignore[no-any-return]

    def sandbox(self, sid: str) -> dict[str, Any]:
        r = self.client.get(f"/api/sessions/{sid}/sandbox", headers=self.account.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def action(self, sid: str, name: str, body: Any = None) -> Any:
        return self.client.post(
            f"/api/sessions/{sid}/sandbox/{name}", json=body, headers=self.account.headers
        )

    def wait_state(self, sid: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.session(sid)
            if s["lifecycleState"] in states:
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{sid} stuck in {s['lifecycleState']}, wanted {states}: {s}")
            time.sleep(0.05)

    async def sandbox_of(self, session: dict[str, Any]) -> Any:
        return await self.provider.connect(session["sandboxState"])


HarnessFactory = Callable[..., Harness]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A database per test: starting the lifecycle reconciles *every* unfinished session in
    its database, so tests must not see each other's (nor the API tests' inert) sessions."""
    with make_backend(request.param, tmp_path / "db") as fresh:
        yield fresh


@pytest.fixture
def harness(backend: Backend, tmp_path: Path) -> Iterator[HarnessFactory]:
    stack = ExitStack()

    def make(
        *,
        idle: int = 600,
        hard: int = 18000,
        provider: SandboxProvider | None = None,
        hooks: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Harness:
        hooks_file = None
        if hooks is not None:
            hooks_file = tmp_path / "hooks.json"
            hooks_file.write_text(json.dumps({"hooks": hooks}))
        settings = backend.settings(
            data_dir=tmp_path / "data",
            idle_timeout_seconds=idle,
            hard_timeout_seconds=hard,
            executor_id=f"test-{uuid.uuid4().hex[:12]}",
            hooks_file=hooks_file,
            **overrides,
        )
        provider = provider or FakeProvider(tmp_path / "sandboxes")
        context = LifecycleContext(
            settings, backend.db, HookRunner(hooks_file), providers={"local": provider}
        )
        app = create_app(
            settings, db=backend.db, lifecycle=Lifecycle(settings, backend.db, context)
        )
        client = stack.enter_context(TestClient(app))
        return Harness(client, make_account(backend.db), provider, settings, backend)

    yield make
    stack.close()
