"""The account's limit of live sandboxes on resume, with the real lifecycle workflows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.lifecycle.conftest import HarnessFactory


def test_resumes_past_the_live_sandbox_limit_are_refused_exactly(
    harness: HarnessFactory,
) -> None:
    """Four hibernated sessions, room for two live sandboxes, four resumes at once: exactly
    two restore, the other two get 429 and stay hibernated. Hibernating one frees a place."""
    h = harness(account_max_live_sandboxes=2)
    ids: list[str] = []
    for _ in range(2):
        pair = [h.create()["id"] for _ in range(2)]
        for sid in pair:
            h.wait_state(sid, "active")
            r = h.action(sid, "hibernate")
            assert r.status_code == 200 and r.json()["lifecycleState"] == "hibernated", r.text
        ids += pair

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda sid: h.action(sid, "resume"), ids))
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429]
    states: dict[str, Any] = {sid: h.session(sid)["lifecycleState"] for sid in ids}
    for sid, r in zip(ids, responses, strict=True):
        if r.status_code == 429:
            assert r.headers["retry-after"] == "30"
            assert "AGENT_SESSIONS_ACCOUNT_MAX_LIVE_SANDBOXES" in r.json()["error"]
            assert states[sid] == "hibernated"
        else:
            assert states[sid] == "active"

    refused = next(sid for sid, r in zip(ids, responses, strict=True) if r.status_code == 429)
    running = next(sid for sid in ids if states[sid] == "active")
    assert h.action(running, "hibernate").status_code == 200
    r = h.action(refused, "resume")
    assert r.status_code == 200 and r.json()["lifecycleState"] == "active", r.text
