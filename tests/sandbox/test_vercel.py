"""Vercel-specific behaviour, on the real SDK over the labelled stand-in transport.

The shared contract suite (``test_contract.py``) also runs against this provider; these tests
cover what only Vercel has: credentials from Vercel's variables, state that is only ids, the
SDK's automatic resume of a stopped session, and error mapping.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from agent_sessions.sandbox import (
    FileTooLarge,
    PathConflict,
    PathNotFound,
    SandboxNotFound,
    SandboxProvider,
    SandboxUnavailable,
    provider_from_settings,
)
from agent_sessions.sandbox._vercel_fake import (
    FakeVercelTransport,
    bwrap_available,
    fake_vercel_client,
    fake_vercel_provider,
)
from agent_sessions.sandbox.vercel import VercelProvider
from agent_sessions.settings import Settings
from agent_sessions.snapshots import LocalSnapshotStore

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not bwrap_available(), reason="VERCEL STAND-IN SKIPPED: needs bwrap"),
]

_VERCEL_ENV = ("VERCEL_TOKEN", "VERCEL_TEAM_ID", "VERCEL_PROJECT_ID", "VERCEL_OIDC_TOKEN")


@pytest.fixture
async def vercel(tmp_path: Path) -> AsyncIterator[VercelProvider]:
    async with fake_vercel_provider(tmp_path) as provider:
        yield provider


async def test_sandboxes_are_named_persistent_and_long_lived(tmp_path: Path) -> None:
    transport = FakeVercelTransport(tmp_path / "vercel")
    client = fake_vercel_client(transport)
    provider = VercelProvider(
        Settings(data_dir=tmp_path), LocalSnapshotStore(tmp_path / "s"), client=client
    )
    try:
        await provider.create("persistent-one")
        await provider.create("persistent-one")  # get-or-create: the same sandbox again
        spec = transport.sandboxes["persistent-one"].spec
    finally:
        await transport.aclose()
        await client.aclose()
    assert spec["name"] == "persistent-one"
    assert spec["persistent"] is True
    # Vercel's default session limit is 5 minutes; ours is the session's hard timeout (ms).
    assert spec["timeout"] == Settings().hard_timeout_seconds * 1000
    assert [p for m, p in transport.requests if m == "POST" and p == "v3/sandboxes"] == [
        "v3/sandboxes"
    ]


async def test_state_is_ids_only(vercel: VercelProvider) -> None:
    box = await vercel.create("state-check")
    assert box.state == {"type": "vercel", "sandboxName": "state-check"}
    assert "fake-token" not in json.dumps(box.state)
    again = await vercel.connect(json.loads(json.dumps(box.state)))
    assert (await again.exec("echo hi")).stdout == "hi\n"


@pytest.mark.parametrize(
    "state",
    [
        {"type": "vercel", "sandboxName": "never-created"},
        {"type": "local", "sandboxName": "x"},
        {"type": "vercel"},
        {},
    ],
)
async def test_connect_to_unknown_sandbox(vercel: VercelProvider, state: dict[str, str]) -> None:
    with pytest.raises(SandboxNotFound):
        await vercel.connect(state)


async def test_credentials_come_from_vercel_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = FakeVercelTransport(tmp_path / "vercel", token="tok-from-env")
    for key in _VERCEL_ENV:
        monkeypatch.delenv(key, raising=False)
    client = fake_vercel_client(transport, credentials=False)
    provider = VercelProvider(
        Settings(data_dir=tmp_path), LocalSnapshotStore(tmp_path / "s"), client=client
    )
    try:
        with pytest.raises(SandboxUnavailable):  # no credentials at all: a clear upstream error
            await provider.create("no-creds")
        monkeypatch.setenv("VERCEL_TOKEN", "tok-from-env")
        monkeypatch.setenv("VERCEL_TEAM_ID", "team_env")
        monkeypatch.setenv("VERCEL_PROJECT_ID", "prj_env")
        box = await provider.create("with-creds")
        assert (await box.exec("echo ok")).stdout == "ok\n"
        assert transport.sandboxes["with-creds"].project_id == "prj_env"
        assert "tok-from-env" not in json.dumps(box.state)
    finally:
        await transport.aclose()
        await client.aclose()


async def test_stopped_sandbox_resumes_on_demand(vercel: VercelProvider) -> None:
    box = await vercel.create("resumable")
    await box.write_file("kept.txt", b"survives stop")
    await box.stop()
    assert await box.status() == "stopped"
    await box.stop()  # idempotent
    assert await box.read_file("kept.txt") == b"survives stop"  # the SDK resumed the session
    assert await box.status() == "running"


async def test_file_errors_map_to_ours(vercel: VercelProvider) -> None:
    box = await vercel.create("files")
    await box.write_file("dir/f.txt", b"x")
    with pytest.raises(PathConflict):
        await box.read_file("dir")
    with pytest.raises(PathNotFound):
        await box.read_file("dir/missing")
    with pytest.raises(PathNotFound):
        await box.remove("dir/missing")
    with pytest.raises(PathConflict):
        await box.list_dir("dir/f.txt")


async def test_snapshot_moves_between_sandboxes(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "shared-snapshots")
    async with fake_vercel_provider(tmp_path, store) as provider:
        first = await provider.create("first")
        await first.exec("mkdir -p a/empty && printf data > a/f && ln -s a/f link && chmod 700 a")
        info = await first.snapshot()
        assert info.url.startswith("local://snapshots/snap-first-")
        second = await provider.create("second")
        await second.write_file("stale.txt", b"replaced by the restore")
        await second.restore(info.url)
        listing = await second.exec("find . -printf '%p %y %m %l\\n' | sort")
        assert listing.stdout == (
            ". d 755 \n./a d 700 \n./a/empty d 755 \n./a/f f 644 \n./link l 777 a/f\n"
        )


class _GrowingTransport(FakeVercelTransport):
    """The stand-in, where each file grows by four bytes just before it is downloaded (as a
    process in the VM may grow it between the provider's size check and its read)."""

    def _read(self, box: Any, spec: Mapping[str, Any]) -> httpx2.Response:
        with open(self._host_path(box, spec["path"], spec.get("cwd")), "ab") as f:
            f.write(b"more")
        return super()._read(box, spec)


@contextlib.asynccontextmanager
async def _provider_on(transport: FakeVercelTransport, tmp_path: Path) -> AsyncIterator[Any]:
    client = fake_vercel_client(transport)
    try:
        yield VercelProvider(
            Settings(data_dir=tmp_path), LocalSnapshotStore(tmp_path / "s"), client=client
        )
    finally:
        await transport.aclose()
        await client.aclose()


async def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    transport = _GrowingTransport(tmp_path / "vercel")
    async with _provider_on(transport, tmp_path) as provider:
        box = await provider.create("growing")
        await box.write_file("f", b"x" * 10)
        with pytest.raises(FileTooLarge) as caught:
            await box.read_file("f", max_bytes=12)
        assert caught.value.size is None  # it passed the size check: caught while reading
        assert await box.read_file("f", max_bytes=100) == b"x" * 10 + b"more" * 2


async def test_bounded_reads_fetch_only_what_they_return(tmp_path: Path) -> None:
    transport = FakeVercelTransport(tmp_path / "vercel")
    async with _provider_on(transport, tmp_path) as provider:
        box = await provider.create("reads")
        await box.exec("truncate -s 1G big")
        transport.requests.clear()
        with pytest.raises(FileTooLarge):
            await box.read_file("big")
        assert not [p for _, p in transport.requests if p.endswith("/fs/read")]  # not fetched
        # From an offset (the SDK cannot seek): windows cut in the VM, no download; 9 MiB in
        # three commands after the stat.
        data = os.urandom(9 << 20)
        await box.write_file("nine", data)
        transport.requests.clear()
        assert b"".join([c async for c in box.read_stream("nine", offset=1)]) == data[1:]
        assert [p.rsplit("/", 1)[-1] for _, p in transport.requests] == ["cmd"] * 4
        # From the start: one streamed download, stopped at the length asked for.
        transport.requests.clear()
        assert b"".join([c async for c in box.read_stream("nine", length=5)]) == data[:5]
        assert [p.rsplit("/", 1)[-1] for _, p in transport.requests] == ["cmd", "read"]


class _FailingTransport(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(403, json={"error": {"code": "forbidden", "message": "no"}})


async def test_upstream_failure_is_an_upstream_error(tmp_path: Path) -> None:
    client = fake_vercel_client(_FailingTransport())
    provider = VercelProvider(
        Settings(data_dir=tmp_path), LocalSnapshotStore(tmp_path), client=client
    )
    try:
        with pytest.raises(SandboxUnavailable):
            await provider.create("denied")
    finally:
        await client.aclose()


def test_provider_from_settings_builds_without_io(tmp_path: Path) -> None:
    provider: SandboxProvider = provider_from_settings(
        Settings(data_dir=tmp_path, sandbox_provider="vercel")
    )
    assert isinstance(provider, VercelProvider)
    assert provider.capabilities()["kind"] == "vercel"
