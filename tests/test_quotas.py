"""Account limits at the HTTP layer: sessions with a live sandbox, and the write rate.

The app runs with ``InertLifecycle``: every session it makes stays ``provisioning`` (a live
sandbox) until it is archived, so the count is exactly what the requests made it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from agent_sessions.api.ratelimit import WriteRate
from agent_sessions.exceptions import TooManyRequests
from tests.conftest import Account, Backend, api_app


def _refused(r: httpx.Response, setting: str) -> int:
    """Assert a 429 in the error shape naming ``setting``; returns its Retry-After."""
    assert r.status_code == 429, r.text
    body = r.json()
    assert set(body) == {"status", "error"} and body["status"] == "error", body
    assert setting in body["error"], body
    return int(r.headers["retry-after"])


def test_sessions_past_the_live_sandbox_limit_are_refused_exactly(
    backend: Backend, alice: Account, bob: Account
) -> None:
    with TestClient(api_app(backend, account_max_live_sandboxes=3)) as c:

        def create(i: int) -> httpx.Response:
            return c.post("/api/sessions", json={"title": f"s{i}"}, headers=alice.headers)

        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(create, range(10)))
        assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 7
        for r in responses:
            if r.status_code == 429:
                assert _refused(r, "AGENT_SESSIONS_ACCOUNT_MAX_LIVE_SANDBOXES") == 30
        listing = c.get("/api/sessions?status=all", headers=alice.headers).json()
        assert len(listing["sessions"]) == 3  # nothing made for the refused ones

        # Another account has its own count.
        assert c.post("/api/sessions", json={}, headers=bob.headers).status_code == 200
        # An archived session holds no sandbox: its place is free again, once.
        sid = listing["sessions"][0]["id"]
        r = c.patch(f"/api/sessions/{sid}", json={"status": "archived"}, headers=alice.headers)
        assert r.status_code == 200, r.text
        assert create(10).status_code == 200
        _refused(create(11), "AGENT_SESSIONS_ACCOUNT_MAX_LIVE_SANDBOXES")


def test_writes_past_the_rate_are_refused_with_retry_after(
    backend: Backend, alice: Account, bob: Account
) -> None:
    """Five writes a minute: the sixth is refused until the next token (12 s at most) and
    changes nothing; reads are not counted, and another account has its own bucket."""
    with TestClient(api_app(backend, account_writes_per_minute=5)) as c:
        sid = c.post("/api/sessions", json={}, headers=alice.headers).json()["session"]["id"]
        for i in range(4):
            r = c.patch(f"/api/sessions/{sid}", json={"title": f"t{i}"}, headers=alice.headers)
            assert r.status_code == 200, r.text
        for method, path in [
            ("PATCH", f"/api/sessions/{sid}"),
            ("POST", f"/api/sessions/{sid}/chats"),
            ("DELETE", f"/api/sessions/{sid}"),
            ("POST", "/api/chat/runs"),
        ]:
            r = c.request(method, path, json={"title": "late"}, headers=alice.headers)
            assert 1 <= _refused(r, "AGENT_SESSIONS_ACCOUNT_WRITES_PER_MINUTE") <= 12
        for _ in range(20):  # reads are never limited
            r = c.get(f"/api/sessions/{sid}", headers=alice.headers)
            assert r.status_code == 200
        assert r.json()["session"]["title"] == "t3"
        chats = c.get(f"/api/sessions/{sid}/chats", headers=alice.headers).json()["chats"]
        assert len(chats) == 1
        assert c.post("/api/sessions", json={}, headers=bob.headers).status_code == 200


def test_write_rate_refills_one_token_at_a_time() -> None:
    """The bucket holds a minute's worth and refills evenly; Retry-After is the time to the
    next token, rounded up."""
    now = [1000.0]
    rate = WriteRate(6, clock=lambda: now[0])  # a token every 10 s
    for _ in range(6):
        rate.take("a")
    with pytest.raises(TooManyRequests) as refused:
        rate.take("a")
    assert refused.value.retry_after == 10
    rate.take("b")  # an account of its own
    now[0] += 9.5
    with pytest.raises(TooManyRequests) as refused:
        rate.take("a")
    assert refused.value.retry_after == 1
    now[0] += 0.5
    rate.take("a")
    with pytest.raises(TooManyRequests):
        rate.take("a")
    now[0] += 60
    for _ in range(6):  # full again after a quiet minute, never more than full
        rate.take("a")
    with pytest.raises(TooManyRequests):
        rate.take("a")


def test_a_write_rate_of_zero_is_no_limit() -> None:
    rate = WriteRate(0, clock=lambda: 0.0)
    for _ in range(10_000):
        rate.take("a")
