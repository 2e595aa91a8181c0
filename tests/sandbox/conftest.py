"""Fixtures for the sandbox suites: providers on real bubblewrap, and the provider registry.

The contract suite (``test_contract.py``) runs once per entry of :data:`PROVIDER_FIXTURES`.
To add a provider, define a fixture that yields a ready :class:`SandboxProvider` (sync or async,
function scope) and add one line ``"<kind>": "<fixture name>"`` to the dict. Contract tests
that cannot apply to a provider skip themselves by kind (see ``skip_unless_isolated``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_sessions.sandbox import Sandbox, SandboxProvider
from agent_sessions.sandbox.fake import FakeProvider
from agent_sessions.settings import Settings
from tests.conftest import traversable_tmpdir

PROVIDER_FIXTURES: dict[str, str] = {
    "local": "local_provider",
    "local-disk": "local_disk_provider",
    "fake": "fake_provider",
    "vercel": "vercel_provider",
}
"""Provider kind → name of the fixture that yields it (the contract suite's parameters)."""

ISOLATED_KINDS = {"local", "vercel"}
"""Providers that isolate commands from the host (the fake does not, by design)."""

# A uid range of our own per test process: other test runs on this host use other data dirs,
# and two maps handing out the same uid would let one run's stop() kill the other's sandboxes.
UID_BASE = 400_000 + (os.getpid() % 5000) * 100


def local_unavailable_reason() -> str | None:
    """Why the real local provider cannot run here, or None."""
    missing = [t for t in ("bwrap", "setpriv", "prlimit", "choom") if shutil.which(t) is None]
    if missing:
        return (
            f"LOCAL SANDBOX TESTS SKIPPED: {', '.join(missing)} not installed "
            "(run scripts/ensure-system-deps.sh)"
        )
    return None


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "NEEDS ROOT: the per-sandbox host uid (docs/architecture.md, Local sandbox) is only "
            "used when the service runs as root; run this suite as root to check it"
        )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox_data_dir() -> Iterator[Path]:
    with traversable_tmpdir("agent-sessions-sbx-") as path:
        yield path


def local_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "sandbox_uid_base": UID_BASE,
        "sandbox_uid_count": 100,
        "sandbox_network": "off",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def snapshot_store(data_dir: Path) -> object | None:
    try:
        from agent_sessions.snapshots import LocalSnapshotStore
    except ImportError:
        return None
    return LocalSnapshotStore(data_dir / "snapshots")


async def _destroy_all(provider: SandboxProvider, created: list[Sandbox]) -> None:
    for box in created:
        await box.destroy()


@pytest.fixture
async def local_provider(sandbox_data_dir: Path) -> AsyncIterator[SandboxProvider]:
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from agent_sessions.sandbox.local import LocalProvider

    provider = LocalProvider(
        local_settings(sandbox_data_dir),
        snapshot_store(sandbox_data_dir),  # type: ignore[arg-type]
    )
    tracked = _Tracking(provider)
    yield tracked
    await _destroy_all(provider, tracked.created)


@pytest.fixture
async def local_disk_provider(sandbox_data_dir: Path) -> AsyncIterator[SandboxProvider]:
    """The local provider with a disk limit: every workspace a loop-mounted image."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from agent_sessions.sandbox.local import LocalProvider

    provider = LocalProvider(
        local_settings(sandbox_data_dir, sandbox_disk_bytes=256 << 20),
        snapshot_store(sandbox_data_dir),  # type: ignore[arg-type]
    )
    if not provider.disk.available:
        pytest.skip(f"DISK LIMIT NOT ENFORCEABLE ON THIS HOST: {provider.disk.reason}")
    tracked = _Tracking(provider)
    yield tracked
    await _destroy_all(provider, tracked.created)


@pytest.fixture
async def fake_provider(tmp_path: Path) -> AsyncIterator[SandboxProvider]:
    provider = FakeProvider(tmp_path / "fake")
    tracked = _Tracking(provider)
    yield tracked
    await _destroy_all(provider, tracked.created)


@pytest.fixture
async def vercel_provider(tmp_path: Path) -> AsyncIterator[SandboxProvider]:
    """The Vercel provider on the real SDK, over HTTP to the labelled stand-in of its API."""
    from agent_sessions.sandbox._vercel_fake import bwrap_available, fake_vercel_provider

    if not bwrap_available():
        pytest.skip("VERCEL STAND-IN SKIPPED: it runs commands under bwrap, which is missing")
    async with fake_vercel_provider(tmp_path) as provider:
        tracked = _Tracking(provider)
        yield tracked
        await _destroy_all(provider, tracked.created)


class _Tracking(SandboxProvider):
    """Wraps a provider so every sandbox a test creates is destroyed afterwards."""

    def __init__(self, inner: SandboxProvider) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.created: list[Sandbox] = []

    async def create(self, name: str) -> Sandbox:
        box = await self.inner.create(name)
        self.created.append(box)
        return box

    async def connect(self, state):  # type: ignore[no-untyped-def]
        return await self.inner.connect(state)

    def capabilities(self):  # type: ignore[no-untyped-def]
        return self.inner.capabilities()


@pytest.fixture(params=sorted(PROVIDER_FIXTURES))
def provider(request: pytest.FixtureRequest) -> SandboxProvider:
    """Each registered provider in turn."""
    return request.getfixturevalue(PROVIDER_FIXTURES[request.param])  # type: ignore[no-any-return]


def skip_unless_isolated(provider: SandboxProvider) -> None:
    if provider.kind not in ISOLATED_KINDS:
        pytest.skip(f"{provider.kind} provider runs commands on the host, without isolation")
