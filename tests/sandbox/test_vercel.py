"""Vercel-specific behaviour: the real SDK over real HTTP to the labelled stand-in of Vercel's API.

The shared contract suite (``test_contract.py``) also runs against this provider; these tests
cover what only Vercel has: credentials from Vercel's variables and the plan's session limit,
state that is only ids, sessions that stop slowly (``stopping``, ``snapshotting``) and resume
on demand, failures injected into the API (429, 5xx, timeouts, dropped connections) and how
each is retried or mapped onto our errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from vercel.sandbox import (
    SandboxApiError,
    SandboxCredentialsError,
    SandboxResponseError,
    SandboxStreamError,
)

from agent_sessions.sandbox import (
    FileTooLarge,
    PathConflict,
    PathNotFound,
    SandboxAuthError,
    SandboxNotFound,
    SandboxProvider,
    SandboxRejected,
    SandboxUnavailable,
    provider_from_settings,
)
from agent_sessions.sandbox._vercel_errors import classify, translate
from agent_sessions.sandbox._vercel_fake import (
    FakeVercelApi,
    Fault,
    bwrap_available,
    fake_vercel,
    fake_vercel_client,
    fake_vercel_provider,
)
from agent_sessions.sandbox.vercel import RetryPolicy, VercelProvider
from agent_sessions.settings import Settings
from agent_sessions.snapshots import LocalSnapshotStore
from tests.support.waiting import until_async

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not bwrap_available(), reason="VERCEL STAND-IN SKIPPED: needs bwrap"),
]

_VERCEL_ENV = ("VERCEL_TOKEN", "VERCEL_TEAM_ID", "VERCEL_PROJECT_ID", "VERCEL_OIDC_TOKEN")
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, transition_timeout=30, poll_interval=0.02)
"""The default bounds, with short waits: what is counted is tries, not seconds."""


@contextlib.asynccontextmanager
async def _stack(
    tmp_path: Path,
    *,
    policy: RetryPolicy = FAST,
    timeout: float = 30.0,  # noqa: ASYNC109 (the client's HTTP timeout)
    credentials: bool = True,
    **settings: Any,
) -> AsyncIterator[tuple[FakeVercelApi, VercelProvider]]:
    async with fake_vercel(tmp_path / "vercel") as api:
        client = fake_vercel_client(api, timeout=timeout, credentials=credentials)
        provider = VercelProvider(
            Settings(data_dir=tmp_path, **settings),
            LocalSnapshotStore(tmp_path / "snapshots"),
            client=client,
            retry_policy=policy,
        )
        try:
            yield api, provider
        finally:
            await client.aclose()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[FakeVercelApi, VercelProvider]]:
    async with _stack(tmp_path) as pair:
        yield pair


def _count(api: FakeVercelApi, method: str, suffix: str) -> int:
    return sum(1 for m, p in api.requests if m == method and p.endswith(suffix))


async def _raw(api: FakeVercelApi, method: str, path: str, **kwargs: Any) -> httpx2.Response:
    """One request to the stand-in, authenticated as the SDK does, to look at the wire."""
    async with httpx2.AsyncClient(trust_env=False) as http:
        return await http.request(
            method,
            f"{api.base_url}/{path}",
            params={"teamId": api.team_id},
            headers={"authorization": f"Bearer {api.token}"},
            **kwargs,
        )


# --- creation, plan and credentials ---------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "hard_timeout", "expected_ms"),
    [
        ("hobby", 18000, 45 * 60 * 1000),  # the plan's maximum, not the 5 h hard timeout
        ("pro", 18000, 18000 * 1000),
        ("pro", 600, 600 * 1000),
    ],
)
async def test_sandboxes_are_named_persistent_within_the_plan_limit(
    tmp_path: Path, plan: str, hard_timeout: int, expected_ms: int
) -> None:
    async with _stack(tmp_path, vercel_plan=plan, hard_timeout_seconds=hard_timeout) as (
        api,
        provider,
    ):
        await provider.create("persistent-one")
        await provider.create("persistent-one")  # get-or-create: the same sandbox again
        spec = api.sandboxes["persistent-one"].spec
        assert provider.capabilities()["sessionLimitSeconds"] * 1000 == expected_ms
    assert spec["name"] == "persistent-one"
    assert spec["persistent"] is True
    assert spec["timeout"] == expected_ms
    assert _count(api, "POST", "v3/sandboxes") == 1


async def test_state_is_ids_only(stack: tuple[FakeVercelApi, VercelProvider]) -> None:
    _, vercel = stack
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
async def test_connect_to_unknown_sandbox(
    stack: tuple[FakeVercelApi, VercelProvider], state: dict[str, str]
) -> None:
    with pytest.raises(SandboxNotFound):
        await stack[1].connect(state)


async def test_an_unknown_sandbox_is_a_404_as_in_vercels_mock(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    answer = await _raw(api, "GET", "v2/sandboxes/never-created")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "not_found"
    box = await vercel.create("gone-soon")
    await box.destroy()
    assert await box.status() == "missing"
    await box.destroy()  # idempotent
    with pytest.raises(SandboxNotFound):
        await vercel.connect(box.state)
    assert _count(api, "GET", "v2/sandboxes/gone-soon") >= 2  # each asked once: no retry


async def test_credentials_come_from_vercel_variables_team_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in _VERCEL_ENV:
        monkeypatch.delenv(key, raising=False)
    async with _stack(tmp_path, credentials=False) as (api, provider):
        assert provider.capabilities()["credentialsPresent"] is False
        with pytest.raises(SandboxAuthError):  # no credentials: a configuration error
            await provider.create("no-creds")
        monkeypatch.setenv("VERCEL_TOKEN", api.token)
        monkeypatch.setenv("VERCEL_PROJECT_ID", "prj_env")
        # Token and project are not enough: the SDK needs the team too.
        capabilities = provider.capabilities()
        assert capabilities["credentialsPresent"] is False
        assert "VERCEL_TEAM_ID" in capabilities["credentialsProblem"]
        assert api.token not in json.dumps(capabilities)
        with pytest.raises(SandboxAuthError):
            await provider.create("no-team")
        monkeypatch.setenv("VERCEL_TEAM_ID", api.team_id)
        assert provider.capabilities()["credentialsPresent"] is True
        box = await provider.create("with-creds")
        assert (await box.exec("echo ok")).stdout == "ok\n"
        assert api.sandboxes["with-creds"].project_id == "prj_env"
        assert api.token not in json.dumps(box.state)
        assert not [p for _, p in api.requests if "no-creds" in p or "no-team" in p]


async def test_refused_credentials_are_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in _VERCEL_ENV:
        monkeypatch.delenv(key, raising=False)
    async with _stack(tmp_path, credentials=False) as (api, provider):
        monkeypatch.setenv("VERCEL_TOKEN", "a-wrong-token")
        monkeypatch.setenv("VERCEL_TEAM_ID", api.team_id)
        monkeypatch.setenv("VERCEL_PROJECT_ID", api.project_id)
        with pytest.raises(SandboxAuthError) as caught:
            await provider.create("denied")
        assert "403" in caught.value.message and "a-wrong-token" not in caught.value.message
        assert len(api.requests) == 1
        async with httpx2.AsyncClient(trust_env=False) as http:  # the stand-in's answers
            url = f"{api.base_url}/v2/sandboxes/denied"
            assert (await http.get(url)).status_code == 401  # no token
            bearer = {"authorization": f"Bearer {api.token}"}
            other_team = await http.get(url, params={"teamId": "team_other"}, headers=bearer)
            assert other_team.status_code == 403


# --- stopping, snapshotting, resuming -------------------------------------------------------


async def test_stop_passes_through_stopping_and_snapshotting(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    box = await vercel.create("resumable")
    await box.write_file("kept.txt", b"survives stop")
    api.hold("snapshotting")
    await box.stop()
    assert api.sandboxes["resumable"].status in ("stopping", "snapshotting")  # not at once
    await until_async("snapshotting", lambda: api.sandboxes["resumable"].status == "snapshotting")
    assert await box.status() == "stopped"  # no processes run any more
    answer = await _raw(
        api, "POST", f"v2/sandboxes/sessions/{api.sandboxes['resumable'].session_id}/cmd",
        json={"command": "true"},
    )  # fmt: skip
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "sandbox_snapshotting")
    api.hold(None)
    await until_async("stopped", lambda: api.sandboxes["resumable"].status == "stopped")
    await box.stop()  # idempotent
    assert await box.read_file("kept.txt") == b"survives stop"  # the SDK resumed the session
    assert await box.status() == "running"


@pytest.mark.parametrize("state", ["stopping", "snapshotting"])
async def test_resume_meeting_a_snapshot_in_progress_waits_for_it(
    stack: tuple[FakeVercelApi, VercelProvider], state: Any
) -> None:
    api, vercel = stack
    box = await vercel.create("busy")
    await box.write_file("f.txt", b"data")
    api.hold(state)
    await box.stop()
    await until_async(state, lambda: api.sandboxes["busy"].status == state)
    reading = asyncio.ensure_future(box.read_file("f.txt"))
    polls = _count(api, "GET", "v2/sandboxes/busy")
    await until_async("a poll", lambda: _count(api, "GET", "v2/sandboxes/busy") > polls + 2)
    assert not reading.done()  # waiting, not failing
    api.hold(None)
    assert await reading == b"data"
    again = await vercel.create("busy")  # a create meeting it is fine too
    assert (await again.exec("cat f.txt")).stdout == "data"


async def test_a_snapshot_that_outlasts_the_wait_fails_clearly(tmp_path: Path) -> None:
    policy = RetryPolicy(base_delay=0.01, transition_timeout=0.2, poll_interval=0.02)
    async with _stack(tmp_path, policy=policy) as (api, vercel):
        box = await vercel.create("stuck")
        api.hold("snapshotting")
        await box.stop()
        await until_async("snapshotting", lambda: api.sandboxes["stuck"].status == "snapshotting")
        with pytest.raises(SandboxUnavailable, match=r"still snapshotting after 0\.2 s"):
            await box.exec("true")
        with pytest.raises(SandboxUnavailable, match="still snapshotting"):
            await vercel.create("stuck")
        api.hold(None)
        assert (await box.exec("echo back")).stdout == "back\n"


# --- injected failures: retried, bounded, mapped --------------------------------------------


async def test_429_with_retry_after_and_5xx_are_retried(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    box = await vercel.create("flaky")
    # Through the stand-in's control API over HTTP, as a test in another process would.
    async with httpx2.AsyncClient(trust_env=False) as http:
        control = api.base_url.replace("/api", "/_fake")
        fault = {"kind": "status", "path": r"/cmd$", "method": "POST", "status": 429}
        await http.post(f"{control}/faults", json={**fault, "retry_after": 0.05, "times": 2})
    before = _count(api, "POST", "/cmd")
    assert (await box.exec("echo through")).stdout == "through\n"
    assert _count(api, "POST", "/cmd") == before + 3  # two 429s, then the command, once
    api.inject(Fault("status", path=r"fs/write$", status=502, times=3))
    await box.write_file("w.txt", b"written")
    assert (await box.exec("cat w.txt")).stdout == "written"


async def test_a_create_racing_another_process_is_retried(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    """Another process created the sandbox between our lookup and our create: Vercel answers
    409, and get-or-create, tried again, finds it."""
    api, vercel = stack
    api.inject(Fault("status", path=r"v3/sandboxes$", status=409, code="sandbox_exists"))
    box = await vercel.create("raced")
    assert (await box.exec("echo here")).stdout == "here\n"
    assert _count(api, "POST", "v3/sandboxes") == 2


async def test_retries_give_up_after_the_bound(stack: tuple[FakeVercelApi, VercelProvider]) -> None:
    api, vercel = stack
    await vercel.create("down")
    api.inject(Fault("status", path=r"v2/sandboxes/down$", method="GET", status=503, times=None))
    before = _count(api, "GET", "v2/sandboxes/down")
    with pytest.raises(SandboxUnavailable) as caught:
        await vercel.connect({"type": "vercel", "sandboxName": "down"})
    assert "503" in caught.value.message and not caught.value.timeout
    assert _count(api, "GET", "v2/sandboxes/down") == before + FAST.attempts
    api.clear_faults()
    # A Retry-After longer than Vercel's own SDK waits (20 s) is not waited for.
    api.inject(Fault("status", path=r"v2/sandboxes/down$", status=429, retry_after=60))
    before = _count(api, "GET", "v2/sandboxes/down")
    with pytest.raises(SandboxUnavailable, match="rate limit"):
        await vercel.connect({"type": "vercel", "sandboxName": "down"})
    assert _count(api, "GET", "v2/sandboxes/down") == before + 1


async def test_timeouts_are_retried_then_a_504(tmp_path: Path) -> None:
    async with _stack(tmp_path, timeout=1.0) as (api, vercel):
        await vercel.create("slow")
        state = {"type": "vercel", "sandboxName": "slow"}
        api.inject(Fault("hang", path=r"v2/sandboxes/slow$", seconds=10, times=1))
        assert (await vercel.connect(state)).name == "slow"
        api.inject(Fault("hang", path=r"v2/sandboxes/slow$", seconds=10, times=None))
        with pytest.raises(SandboxUnavailable) as caught:
            await vercel.connect(state)
        assert caught.value.timeout  # the API answers 504, not 502


async def test_a_dropped_download_goes_on_from_where_it_broke(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    box = await vercel.create("dropping")
    data = os.urandom(3 << 20)
    await box.write_file("big", data)
    api.inject(Fault("drop", path=r"fs/read$", after_records=1))
    assert await box.read_file("big") == data
    assert _count(api, "POST", "fs/read") == 1


async def test_a_broken_command_stream_is_followed_through_its_logs(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    """The SDK's recovery path: the command started, its stream broke; the rest comes from
    ``cmd/{id}/logs`` (replayed from the start, already-seen output skipped) and its exit
    from ``cmd/{id}?wait=true``. The command runs once."""
    api, vercel = stack
    box = await vercel.create("follow")
    before = _count(api, "POST", "/cmd")
    api.inject(Fault("drop", path=r"/cmd$", method="POST", after_records=2))
    result = await box.exec("echo one; sleep 0.3; echo two >&2; echo three; echo x >> ran")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "one\nthree\n", "two\n")
    assert _count(api, "GET", "/logs") == 1
    assert _count(api, "POST", "/cmd") == before + 1
    assert (await box.exec("cat ran")).stdout == "x\n"


async def test_a_command_whose_answer_was_lost_is_not_run_again(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    box = await vercel.create("once")
    api.inject(Fault("drop", path=r"/cmd$", method="POST", after_records=0))
    before = _count(api, "POST", "/cmd")
    with pytest.raises(SandboxUnavailable):
        await box.exec("echo x >> ran")
    assert _count(api, "POST", "/cmd") == before + 1
    ran = await box.exec("cat ran 2>/dev/null | wc -l")
    assert ran.stdout.strip() in ("0", "1")  # at most once


# --- files ----------------------------------------------------------------------------------


async def test_file_errors_map_to_ours(stack: tuple[FakeVercelApi, VercelProvider]) -> None:
    api, vercel = stack
    box = await vercel.create("files")
    await box.write_file("dir/f.txt", b"x")
    with pytest.raises(PathConflict):
        await box.read_file("dir")  # found by a stat first: Vercel is never asked to read it
    assert _count(api, "POST", "fs/read") == 0
    with pytest.raises(PathNotFound):
        await box.read_file("dir/missing")
    with pytest.raises(PathNotFound):
        await box.remove("dir/missing")
    with pytest.raises(PathConflict):
        await box.list_dir("dir/f.txt")
    session = api.sandboxes["files"].session_id
    missing = await _raw(
        api, "POST", f"v2/sandboxes/sessions/{session}/fs/read", json={"path": "/workspace/no"}
    )
    assert (missing.status_code, missing.content) == (404, b"")  # bare, as Vercel's mock
    found = await _raw(
        api, "POST", f"v2/sandboxes/sessions/{session}/fs/read", json={"path": "dir/f.txt"}
    )
    assert found.headers["content-type"] == "application/octet-stream" and found.content == b"x"


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


async def test_what_a_snapshot_through_our_store_costs(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    """The calls a hibernation and a restore make through the file API (docs/vercel-provider.md
    compares them with Vercel's native snapshots): the workspace crosses this host twice."""
    api, vercel = stack
    box = await vercel.create("costs")
    await box.write_file("data.bin", os.urandom(2 << 20))
    api.requests.clear()
    info = await box.snapshot()
    assert [p.rsplit("/", 1)[-1] for _, p in api.requests] == ["cmd", "read", "cmd"]
    api.requests.clear()
    await box.restore(info.url)
    # The SDK makes sure of the session (a resume lookup) before it opens an upload.
    assert [p.rsplit("/", 1)[-1] for _, p in api.requests] == ["costs", "write", "cmd"]
    assert (await box.exec("stat -c %s data.bin")).stdout == f"{2 << 20}\n"


async def test_a_file_that_grows_past_the_limit_while_read_is_refused(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    read = api._read

    async def growing(box: Any, spec: Any) -> Any:
        """A process in the VM grows the file between the provider's size check and its read."""
        host = api._host_path(box, spec["path"], spec.get("cwd"))
        await asyncio.to_thread(_append, host, b"more")
        return await read(box, spec)

    api._read = growing  # type: ignore[method-assign]
    box = await vercel.create("growing")
    await box.write_file("f", b"x" * 10)
    with pytest.raises(FileTooLarge) as caught:
        await box.read_file("f", max_bytes=12)
    assert caught.value.size is None  # it passed the size check: caught while reading
    assert await box.read_file("f", max_bytes=100) == b"x" * 10 + b"more" * 2


async def test_bounded_reads_fetch_only_what_they_return(
    stack: tuple[FakeVercelApi, VercelProvider],
) -> None:
    api, vercel = stack
    box = await vercel.create("reads")
    await box.exec("truncate -s 1G big")
    api.requests.clear()
    with pytest.raises(FileTooLarge):
        await box.read_file("big")
    assert not [p for _, p in api.requests if p.endswith("/fs/read")]  # not fetched
    # From an offset (the SDK cannot seek): windows cut in the VM, no download; 9 MiB in
    # three commands after the stat.
    data = os.urandom(9 << 20)
    await box.write_file("nine", data)
    api.requests.clear()
    assert b"".join([c async for c in box.read_stream("nine", offset=1)]) == data[1:]
    assert [p.rsplit("/", 1)[-1] for _, p in api.requests] == ["cmd"] * 4
    # From the start: one streamed download, stopped at the length asked for.
    api.requests.clear()
    assert b"".join([c async for c in box.read_stream("nine", length=5)]) == data[:5]
    assert [p.rsplit("/", 1)[-1] for _, p in api.requests] == ["cmd", "read"]


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


# --- the mapping table, without a server ----------------------------------------------------


def _api_error(status: int, code: str | None = None, retry_after: str = "") -> SandboxApiError:
    body = {"error": {"code": code, "message": "m"}} if code else {}
    headers = {"retry-after": retry_after} if retry_after else {}
    request = httpx2.Request("GET", "http://127.0.0.1/api/v2/sandboxes/x")
    response = httpx2.Response(status, json=body, headers=headers, request=request)
    return SandboxApiError(response, f"HTTP {status}", data=body)


_STREAM_CLOSED = SandboxStreamError("cut", code="sandbox_stream_closed")


@pytest.mark.parametrize(
    ("error", "missing", "expected", "retry"),
    [
        (SandboxCredentialsError("no"), "sandbox", SandboxAuthError, None),
        (_api_error(401, "unauthorized"), "path", SandboxAuthError, None),
        (_api_error(403, "forbidden"), "path", SandboxAuthError, None),
        (_api_error(404, "not_found"), "sandbox", SandboxNotFound, None),
        (_api_error(404), "path", PathNotFound, None),
        (_api_error(404, "not_found"), "command", SandboxNotFound, None),
        (_api_error(400, "bad_request"), "path", SandboxRejected, None),
        (_api_error(409, "sandbox_exists"), "sandbox", SandboxRejected, None),
        (_api_error(410, "sandbox_stopped"), "path", SandboxUnavailable, "refused"),
        (_api_error(410, "sandbox_stream_closed"), "path", SandboxUnavailable, "lost"),
        (_api_error(422, "sandbox_stopping"), "path", SandboxUnavailable, "transition"),
        (_api_error(422, "sandbox_snapshotting"), "path", SandboxUnavailable, "transition"),
        (_api_error(429, retry_after="1"), "path", SandboxUnavailable, "refused"),
        (_api_error(500), "path", SandboxUnavailable, "refused"),
        (_api_error(503), "path", SandboxUnavailable, "refused"),
        (_STREAM_CLOSED, "path", SandboxUnavailable, "lost"),
        (SandboxStreamError("odd", code="other"), "path", SandboxUnavailable, None),
        (SandboxResponseError("malformed"), "path", SandboxUnavailable, "lost"),
        (httpx2.ConnectError("refused"), "path", SandboxUnavailable, "refused"),
        (httpx2.ConnectTimeout("slow"), "path", SandboxUnavailable, "refused"),
        (httpx2.ReadTimeout("slow"), "path", SandboxUnavailable, "lost"),
        (httpx2.RemoteProtocolError("cut"), "path", SandboxUnavailable, "lost"),
    ],
)  # fmt: skip
def test_every_sdk_and_transport_error_is_mapped(
    error: BaseException, missing: Any, expected: type[Exception], retry: str | None
) -> None:
    mapped = translate(error, "a call", missing, "box")
    assert type(mapped) is expected
    assert classify(error) == retry
    assert getattr(mapped, "timeout", False) == isinstance(error, httpx2.TimeoutException)


def test_provider_from_settings_builds_without_io(tmp_path: Path) -> None:
    provider: SandboxProvider = provider_from_settings(
        Settings(data_dir=tmp_path, sandbox_provider="vercel", vercel_plan="pro")
    )
    assert isinstance(provider, VercelProvider)
    capabilities = provider.capabilities()
    assert (capabilities["kind"], capabilities["plan"]) == ("vercel", "pro")
    assert capabilities["sessionLimitSeconds"] == Settings().hard_timeout_seconds
