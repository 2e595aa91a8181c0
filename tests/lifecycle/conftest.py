"""A real app with the real DBOS lifecycle, in-process, over the fake sandbox provider.

The fake provider (no isolation, labelled as such in the library) keeps these tests fast; the
state-machine and race tests also run on the real bubblewrap provider (``@both_providers``),
and the crash tests in ``test_crash.py`` run the real ``serve`` with it.
"""

from __future__ import annotations

import asyncio
import json
import threading
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
from agent_sessions.sandbox import Sandbox, SandboxNotFound, SandboxProvider, provider_from_settings
from agent_sessions.sandbox.fake import FakeProvider
from agent_sessions.settings import Settings
from agent_sessions.snapshots import SnapshotInfo
from tests.conftest import Account, Backend, make_account, make_backend, traversable_tmpdir
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason

both_providers = pytest.mark.parametrize(
    ("backend", "sandbox_kind"),
    [("sqlite", "fake"), ("postgres", "fake"), ("sqlite", "local")],
    indirect=["backend"],
)
"""Run a test on real bubblewrap sandboxes too (skipped, with the reason, where the host cannot
run them). The database's side of a race runs on both databases with the fake; the sandbox's
side needs one database."""

HOLD_AT_MOST = 120.0
"""A held call goes on by itself after this long, so that a failed test cannot hang its
teardown; tests release their holds long before."""


class Gate:
    """Holds chosen calls of a provider operation, once their work is done, until the test lets
    them go: "a slow snapshot" that is slow exactly as long as the test needs, on any machine.

    Calls are counted from 1 across the harness's sandboxes; ``Gate(1, 3)`` holds the first
    and the third, and lets every other one through.
    """

    def __init__(self, *held: int) -> None:
        self._held = {n: (threading.Event(), threading.Event()) for n in held}
        self._lock = threading.Lock()
        self.calls = 0

    async def passing(self) -> None:
        with self._lock:
            self.calls += 1
            n = self.calls
        if n in self._held:
            reached, go = self._held[n]
            reached.set()
            await asyncio.to_thread(go.wait, HOLD_AT_MOST)

    def wait_held(self, n: int, timeout: float = 30) -> None:
        """Block until call ``n`` is being held."""
        assert self._held[n][0].wait(timeout), f"call {n} never came ({self.calls} so far)"

    def release(self, n: int) -> None:
        self._held[n][1].set()

    def release_all(self) -> None:
        for _, go in self._held.values():
            go.set()


class GatedProvider(SandboxProvider):
    """A provider whose ``create``, and whose sandboxes' ``snapshot``, pass through gates."""

    def __init__(
        self, inner: SandboxProvider, *, create: Gate | None, snapshot: Gate | None
    ) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.create_gate = create
        self.snapshot_gate = snapshot

    async def create(self, name: str) -> Sandbox:
        box = await self.inner.create(name)
        if self.create_gate is not None:
            await self.create_gate.passing()
        return self._gated(box)

    async def connect(self, state: Any) -> Sandbox:
        return self._gated(await self.inner.connect(state))

    def capabilities(self) -> dict[str, Any]:
        return self.inner.capabilities()

    def _gated(self, box: Sandbox) -> Sandbox:
        gate = self.snapshot_gate
        if gate is not None:
            taken = box.snapshot

            async def snapshot() -> SnapshotInfo:
                info = await taken()
                await gate.passing()
                return info

            box.snapshot = snapshot  # type: ignore[method-assign]
        return box


class Background:
    """An HTTP call made in a thread, while the test does something else."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.response: Any = None

        def run() -> None:
            self.response = call()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not return"
        return self.response


@dataclass
class Harness:
    client: TestClient
    account: Account
    provider: SandboxProvider
    settings: Settings
    backend: Backend
    calls: list[Background]

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

    def action_in_background(self, sid: str, name: str) -> Background:
        """The sandbox action in a thread; the harness waits for it before it closes the app
        (after letting every gate go), whatever the test's outcome."""
        call = Background(lambda: self.action(sid, name))
        self.calls.append(call)
        return call

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

    def sandbox_exists(self, sid: str) -> bool:
        """Whether the provider holds a sandbox for the session (its directory, for the fake
        and for bubblewrap alike): the first one is named after the session, a restored one
        after the session and its version (``restored_name``)."""
        root: Path = self.provider.root  # type: ignore[attr-defined]
        return any(p.name == sid or p.name.startswith(f"{sid}-") for p in root.iterdir())

    def wait_sandbox_gone(self, sid: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.sandbox_exists(sid):
            assert time.monotonic() < deadline, f"the sandbox of {sid} is still there"
            time.sleep(0.05)

    def snapshots_kept(self, sid: str) -> list[str]:
        """The session's snapshot archives the local store holds (the fake provider keeps every
        snapshot in memory and has no delete: there, nothing can be said)."""
        assert self.provider.kind == "local"
        store = self.settings.data_dir / "snapshots"
        found = store.glob(f"snap-{sid}-*.tar.zst") if store.is_dir() else []
        return sorted(f"local://snapshots/{p.name}" for p in found)


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def sandbox_kind() -> str:
    """The provider the harness makes: the fake, unless a test says ``@both_providers``."""
    return "fake"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A database per test: starting the lifecycle reconciles *every* unfinished session in
    its database, so tests must not see each other's (nor the API tests' inert) sessions."""
    with make_backend(request.param, tmp_path / "db") as fresh:
        yield fresh


@pytest.fixture
def harness(backend: Backend, tmp_path: Path, sandbox_kind: str) -> Iterator[HarnessFactory]:
    stack = ExitStack()
    gates: list[Gate] = []
    calls: list[Background] = []
    if sandbox_kind == "local":
        reason = local_unavailable_reason()
        if reason:
            pytest.skip(reason)
        # Sandbox uids must be able to reach their workspaces (pytest's tmp_path is 0700).
        data_dir = stack.enter_context(traversable_tmpdir("agent-sessions-lifecycle-"))
        local = {"sandbox_uid_base": UID_BASE, "sandbox_uid_count": 50, "sandbox_network": "off"}
    else:
        data_dir, local = tmp_path / "data", {}

    def make(
        *,
        idle: int = 600,
        hard: int = 18000,
        provider: SandboxProvider | None = None,
        hooks: dict[str, Any] | None = None,
        hold_create: Gate | None = None,
        hold_snapshot: Gate | None = None,
        **overrides: Any,
    ) -> Harness:
        hooks_file = None
        if hooks is not None:
            hooks_file = tmp_path / "hooks.json"
            hooks_file.write_text(json.dumps({"hooks": hooks}))
        settings = backend.settings(
            data_dir=data_dir,
            idle_timeout_seconds=idle,
            hard_timeout_seconds=hard,
            executor_id=f"test-{uuid.uuid4().hex[:12]}",
            hooks_file=hooks_file,
            **{**local, **overrides},
        )
        if provider is None:
            if sandbox_kind == "local":
                provider = provider_from_settings(settings, "local")
                stack.callback(_destroy_all, provider)
            else:
                provider = FakeProvider(tmp_path / "sandboxes")
        used = provider
        if hold_create is not None or hold_snapshot is not None:
            gates.extend(g for g in (hold_create, hold_snapshot) if g is not None)
            used = GatedProvider(provider, create=hold_create, snapshot=hold_snapshot)
        context = LifecycleContext(
            settings, backend.db, HookRunner(hooks_file), providers={"local": used}
        )
        app = create_app(
            settings, db=backend.db, lifecycle=Lifecycle(settings, backend.db, context)
        )
        client = stack.enter_context(TestClient(app))
        return Harness(client, make_account(backend.db), provider, settings, backend, calls)

    yield make
    for gate in gates:  # a failed test may have left a workflow held, and a call waiting
        gate.release_all()
    for call in calls:
        call.thread.join(HOLD_AT_MOST)
    stack.close()


def _destroy_all(provider: SandboxProvider) -> None:
    """Destroy every sandbox the test left (an active session's, at the end of a test): no
    process of a local sandbox outlives its test."""
    root: Path = provider.root  # type: ignore[attr-defined]
    names = [p.name for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []

    async def destroy() -> None:
        for name in names:
            try:
                box = await provider.connect({"provider": provider.kind, "name": name})
            except SandboxNotFound:
                continue
            await box.destroy()

    asyncio.run(destroy())
