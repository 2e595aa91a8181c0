"""The real thing: ``agent-sessions serve`` as a subprocess, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    CLI,
    Backend,
    Server,
    make_account,
    make_backend,
    start_server,
    stop_server,
)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A database of its own: ``serve`` reconciles every unfinished session at start, and the
    shared database is full of the API tests' never-provisioned ones."""
    with make_backend(request.param, tmp_path / "db") as fresh:
        yield fresh


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [CLI, *args, "--json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_fresh_serve_explains_how_to_start_and_readme_walkthrough(tmp_path: Path) -> None:
    """Embedded defaults, no accounts: the hint is printed; then the README's curl walk-through."""
    srv = start_server(tmp_path / "data")
    try:
        assert "accounts create" in srv.log.read_text()
        assert (tmp_path / "data" / "agent-sessions.db").exists()
        assert httpx.get(f"{srv.url}/api/sessions").status_code == 401  # no default credentials
        creds = _cli(srv.env, "accounts", "create", "--name", "me")
        headers = {"x-api-key": creds["apiKey"]}
        created = httpx.post(f"{srv.url}/api/sessions", json={"title": "demo"}, headers=headers)
        assert created.status_code == 200
        sid = created.json()["session"]["id"]
        got = httpx.get(f"{srv.url}/api/sessions/{sid}", headers=headers)
        assert got.json()["session"]["userId"] == creds["accountId"]
    finally:
        stop_server(srv)


async def _patch_storm(srv: Server, sid: str, headers: dict[str, str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=srv.url, headers=headers, limits=limits, timeout=30) as c:

        async def one(i: int) -> httpx.Response:
            body: dict[str, Any] = {"title": f"title-{i}"} if i % 2 else {"linesAdded": i}
            return await c.patch(f"/api/sessions/{sid}", json=body)

        return await asyncio.gather(*(one(i) for i in range(50)))


def _settled(srv: Server, sid: str, headers: dict[str, str]) -> dict[str, Any]:
    """The session once provisioning has finished (either way), so only our PATCHes change it."""
    for _ in range(300):
        s = httpx.get(f"{srv.url}/api/sessions/{sid}", headers=headers).json()["session"]
        if s["lifecycleState"] != "provisioning":
            return s  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError("provisioning did not finish")


def test_fifty_concurrent_patches_lose_nothing(backend: Backend, server: Server) -> None:
    """Fifty PATCHes at once, half to the title and half to linesAdded: they apply one at a
    time, each to the row its predecessor left, so replaying them in the order they committed
    (their updatedAt) gives every answer, and the last is the row that stays."""
    alice = make_account(backend.db)
    created = httpx.post(f"{server.url}/api/sessions", json={}, headers=alice.headers).json()
    sid = created["session"]["id"]
    _settled(server, sid, alice.headers)
    # Values no PATCH of the storm sets: a lost update cannot pass for a kept one.
    r = httpx.patch(
        f"{server.url}/api/sessions/{sid}",
        json={"title": "before the storm", "linesAdded": 999},
        headers=alice.headers,
    )
    assert r.status_code == 200, r.text
    before = r.json()["session"]
    responses = asyncio.run(_patch_storm(server, sid, alice.headers))
    assert [r.status_code for r in responses] == [200] * 50, [
        r.text for r in responses if r.status_code != 200
    ]
    answers = [r.json()["session"] for r in responses]
    committed = [datetime.fromisoformat(a["updatedAt"]) for a in answers]
    assert len(set(committed)) == 50, "two PATCHes wrote the row at the same instant"
    title, lines = before["title"], before["linesAdded"]
    for i in sorted(range(50), key=committed.__getitem__):
        if i % 2:
            title = f"title-{i}"
        else:
            lines = i
        assert (answers[i]["title"], answers[i]["linesAdded"]) == (title, lines), i
    final = httpx.get(f"{server.url}/api/sessions/{sid}", headers=alice.headers).json()["session"]
    assert (final["title"], final["linesAdded"]) == (title, lines)
    assert datetime.fromisoformat(final["updatedAt"]) == max(committed)
    assert final["lifecycleVersion"] == before["lifecycleVersion"]  # PATCH never touches it
