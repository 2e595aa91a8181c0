"""open-agents' ``/api/sandbox…`` routes over real HTTP: the session's sandbox routes under
open-agents' names and shapes (times in epoch milliseconds), with the real lifecycle."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from tests.lifecycle.conftest import Harness, HarnessFactory

LIFECYCLE_KEYS = {"serverTime", "state", "lastActivityAt", "hibernateAfter", "sandboxExpiresAt"}


def _ms(iso: str | None) -> int | None:
    return None if iso is None else int(datetime.fromisoformat(iso).timestamp() * 1000)


def _get(h: Harness, what: str, sid: str) -> Any:
    r = h.client.get(f"/api/sandbox/{what}", params={"sessionId": sid}, headers=h.account.headers)
    assert r.status_code == 200, r.text
    return r.json()


def _call(h: Harness, method: str, path: str, sid: str, **extra: Any) -> Any:
    return h.client.request(
        method, f"/api/sandbox{path}", json={"sessionId": sid, **extra},
        headers=h.account.headers,
    )  # fmt: skip


def test_the_open_agents_sandbox_routes(harness: HarnessFactory) -> None:
    h = harness()
    sid = h.create()["id"]
    # Create or resume: waits for the sandbox; what open-agents' client sends beyond the
    # session (its repository, a branch) is ignored, the session's own binding holds.
    r = _call(h, "POST", "", sid, repoUrl="https://github.com/o/r", branch="main")
    assert r.status_code == 200, r.text
    ready = r.json()
    assert set(ready) == {"createdAt", "timeout", "currentBranch", "mode", "timing"}
    assert ready["timeout"] == h.settings.hard_timeout_seconds * 1000
    assert ready["mode"] == "local" and set(ready["timing"]) == {"readyMs"}
    session = h.session(sid)
    assert session["lifecycleState"] == "active"

    status = _get(h, "status", sid)
    assert set(status) == {"status", "hasSnapshot", "lifecycleVersion", "lifecycle"}
    assert status["status"] == "active" and status["hasSnapshot"] is False
    assert status["lifecycleVersion"] == session["lifecycleVersion"]
    life = status["lifecycle"]
    assert set(life) == LIFECYCLE_KEYS and life["state"] == "active"
    for key in ("lastActivityAt", "hibernateAfter", "sandboxExpiresAt"):
        assert life[key] == _ms(session[key]), key
    assert isinstance(life["serverTime"], int)

    # Reconnect probes the sandbox, and is not activity.
    reconnect = _get(h, "reconnect", sid)
    assert set(reconnect) == {"status", "hasSnapshot", "expiresAt", "lifecycle"}
    assert reconnect["status"] == "connected"
    assert reconnect["expiresAt"] == _ms(session["sandboxExpiresAt"])
    assert h.session(sid)["lastActivityAt"] == session["lastActivityAt"]

    r = _call(h, "POST", "/activity", sid)
    assert r.status_code == 200 and r.json() == {"success": True, "reason": None}
    touched = h.session(sid)
    assert _ms(touched["hibernateAfter"]) >= _ms(session["hibernateAfter"])  # type: ignore[operator]
    assert touched["lastActivityAt"] != session["lastActivityAt"]

    r = _call(h, "POST", "/extend", sid)
    assert r.status_code == 200, r.text
    extended = r.json()
    assert extended["success"] is True
    assert extended["extendedBy"] == h.settings.extend_seconds * 1000
    assert extended["expiresAt"] == _ms(session["sandboxExpiresAt"]) + extended["extendedBy"]
    assert _ms(h.session(sid)["sandboxExpiresAt"]) == extended["expiresAt"]

    # DELETE stops it (a hibernation: snapshot, then stop); again, it was already stopped.
    r = _call(h, "DELETE", "", sid)
    assert r.status_code == 200 and r.json() == {"success": True, "alreadyStopped": False}
    assert h.session(sid)["lifecycleState"] == "hibernated"
    r = _call(h, "DELETE", "", sid)
    assert r.json() == {"success": True, "alreadyStopped": True}
    status = _get(h, "status", sid)
    assert status["status"] == "no_sandbox" and status["hasSnapshot"] is True
    assert status["lifecycle"]["state"] == "hibernated"
    assert _get(h, "reconnect", sid)["status"] == "no_sandbox"
    r = _call(h, "POST", "/activity", sid)
    assert r.json() == {"success": False, "reason": "not-active"}
    r = _call(h, "POST", "/extend", sid)
    assert r.status_code == 400 and r.json()["error"] == "Sandbox not initialized"

    # POST resumes it.
    r = _call(h, "POST", "", sid)
    assert r.status_code == 200, r.text
    assert _get(h, "status", sid)["status"] == "active"

    # A sandbox gone from under the session: reconnect says it expired.
    async def destroy() -> None:
        await (await h.sandbox_of(h.session(sid))).destroy()

    asyncio.run(destroy())
    assert _get(h, "reconnect", sid)["status"] == "expired"


def test_the_session_must_be_named(harness: HarnessFactory) -> None:
    h = harness()
    for method, path in [("POST", ""), ("DELETE", ""), ("POST", "/extend"), ("POST", "/activity")]:
        r = h.client.request(method, f"/api/sandbox{path}", json={}, headers=h.account.headers)
        assert r.status_code == 400 and r.json()["path"] == ["body", "sessionId"], r.text
    for what in ("status", "reconnect"):
        r = h.client.get(f"/api/sandbox/{what}", headers=h.account.headers)
        assert r.status_code == 400 and r.json()["path"] == ["query", "sessionId"], r.text
