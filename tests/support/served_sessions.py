"""A session on a service running in its own process, driven over real HTTP (the memory
tests measure that process, so they cannot use the in-process test client)."""

from __future__ import annotations

import time
from typing import Any

import httpx


def get_json(url: str, path: str, headers: dict[str, str]) -> Any:
    return httpx.get(f"{url}{path}", headers=headers, timeout=30).json()


def new_active_session(url: str, headers: dict[str, str], timeout: float = 60) -> str:
    """Create a session and wait until its sandbox is active; its id."""
    created = httpx.post(f"{url}/api/sessions", json={}, headers=headers).json()
    sid: str = created["session"]["id"]
    deadline = time.monotonic() + timeout
    while get_json(url, f"/api/sessions/{sid}", headers)["session"]["lifecycleState"] != "active":
        assert time.monotonic() < deadline, "sandbox not active"
        time.sleep(0.1)
    return sid
