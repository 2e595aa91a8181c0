"""Sessions routes as the Sessions API contract describes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from agent_sessions.store import accounts
from agent_sessions.store.models import Chat, ChatKey, SessionRow, utcnow
from tests.conftest import Account, Backend

SEED_FIELDS = {
    "id", "userId", "artistId", "title", "status", "repoOwner", "repoName", "branch", "cloneUrl",
    "isNewBranch", "globalSkillRefs", "sandboxState", "lifecycleState", "lifecycleVersion",
    "lastActivityAt", "sandboxExpiresAt", "hibernateAfter", "lifecycleRunId", "lifecycleError",
    "linesAdded", "linesRemoved", "snapshotUrl", "snapshotCreatedAt", "snapshotSizeBytes",
    "cachedDiff", "cachedDiffUpdatedAt", "createdAt", "updatedAt",
}  # fmt: skip
EXTRA_FIELDS = {"autoCommitPush", "autoCreatePr", "prNumber", "prStatus", "baseBranch"}
"""Ours beyond the seed's (ADR 13): the workspace's automation, pull request and base branch."""
LIST_FIELDS = {"hasUnread", "hasStreaming", "latestChatId"}
"""A list's sessions add their chats' state (the open-agents web app's sidebar reads them)."""


def _create(client: TestClient, who: Account, body: Any = None) -> dict[str, Any]:
    r = client.post("/api/sessions", json=body if body is not None else {}, headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_create_returns_session_and_initial_chat(client: TestClient, alice: Account) -> None:
    out = _create(client, alice, {"title": "  Fix the build  "})
    session, chat = out["session"], out["chat"]
    assert set(session) == SEED_FIELDS | EXTRA_FIELDS
    assert session["title"] == "Fix the build"
    assert session["userId"] == alice.id
    assert session["status"] == "running"
    assert session["lifecycleState"] == "provisioning"
    assert session["lifecycleVersion"] == 0
    assert session["isNewBranch"] is False and session["globalSkillRefs"] == []
    assert session["linesAdded"] == 0 and session["sandboxState"] is None
    assert session["createdAt"].endswith("Z")
    assert len(session["id"]) == 21
    assert chat["title"] == "New chat" and chat["sessionId"] == session["id"]


def test_create_without_body_generates_a_title(client: TestClient, alice: Account) -> None:
    r = client.post("/api/sessions", headers=alice.headers)
    assert r.status_code == 200, r.text
    title = r.json()["session"]["title"]
    assert len(title.split()) == 2 and title.istitle()


def test_create_with_repo_binding(client: TestClient, alice: Account) -> None:
    s = _create(
        client,
        alice,
        {
            "cloneUrl": "https://github.com/acme/widgets.git",
            "branch": "feature/x",
            "isNewBranch": True,
            "artistId": "6f1c1f7e-3f7a-4b6e-9a55-0d1d2f3a4b5c",
        },
    )["session"]
    # isNewBranch: the server names the branch at once, made from the one asked for.
    assert (s["repoOwner"], s["repoName"], s["baseBranch"]) == ("acme", "widgets", "feature/x")
    assert s["branch"].startswith("agent/") and len(s["branch"]) == len("agent/") + 8
    assert s["isNewBranch"] is True
    assert s["artistId"] == "6f1c1f7e-3f7a-4b6e-9a55-0d1d2f3a4b5c"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": 5}, "title"),
        ({"organizationId": "nope"}, "organizationId"),
        ({"cloneUrl": "file:///etc/passwd"}, "cloneUrl"),
        # git clone would take these as options: -u is --upload-pack, a command to run
        ({"cloneUrl": "-u@x:touch${IFS}/tmp/pwned"}, "cloneUrl"),
        ({"cloneUrl": "--upload-pack@x:y"}, "cloneUrl"),
        ({"cloneUrl": "-"}, "cloneUrl"),
        ({"branch": "--upload-pack=x"}, "branch"),
        ({"branch": "a..b"}, "branch"),
        ({"isNewBranch": "yes"}, "isNewBranch"),
        ({"sandboxType": "docker"}, "sandboxType"),
        ({"globalSkillRefs": "x"}, "globalSkillRefs"),
        ({"surprise": 1, "title": ""}, "title"),  # unknown keys ignored, known ones checked
    ],
)
def test_create_rejects_bad_fields_and_creates_nothing(
    backend: Backend, client: TestClient, alice: Account, body: dict[str, Any], field: str
) -> None:
    r = client.post("/api/sessions", json=body, headers=alice.headers)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["status"] == "error" and field in err["path"]
    with backend.db.read() as s:
        count = s.scalar(select(func.count()).where(SessionRow.account_id == alice.id))
    assert count == 0


def test_create_ignores_unknown_keys_as_the_reference_api_does(
    client: TestClient, alice: Account
) -> None:
    """Recoup's ``POST /api/sessions`` reads the keys it knows; clients send their own extras
    (the open-agents web app sends ``vercelProject``)."""
    out = _create(client, alice, {"title": "kept", "vercelProject": {"id": "prj"}, "surprise": [1]})
    assert out["session"]["title"] == "kept"
    assert "surprise" not in out["session"] and "vercelProject" not in out["session"]


def test_new_chats_carry_the_default_model(client: TestClient, alice: Account) -> None:
    """``Chat.modelId`` is a string (the docs): a session's first chat and every new chat get
    the default model rather than null."""
    out = _create(client, alice)
    assert out["chat"]["modelId"] == "openai/gpt-5.4"
    sid = out["session"]["id"]
    made = client.post(f"/api/sessions/{sid}/chats", json={"id": "c2"}, headers=alice.headers)
    assert made.json()["chat"]["modelId"] == "openai/gpt-5.4"
    listed = client.get(f"/api/sessions/{sid}/chats", headers=alice.headers).json()
    assert {c["modelId"] for c in listed["chats"]} == {listed["defaultModelId"]}


def test_organization_requires_membership(
    backend: Backend, client: TestClient, alice: Account, bob: Account
) -> None:
    with backend.db.write() as s:
        org = accounts.create_organization(s, name="acme")
        accounts.add_member(s, organization_id=org.id, account_id=alice.id)
    assert (
        client.post(
            "/api/sessions", json={"organizationId": org.id}, headers=alice.headers
        ).status_code
        == 200
    )
    r = client.post("/api/sessions", json={"organizationId": org.id}, headers=bob.headers)
    assert r.status_code == 403
    with backend.db.read() as s:
        assert s.scalar(select(func.count()).where(SessionRow.account_id == bob.id)) == 0


def test_list_is_newest_first_filtered_and_paged(
    client: TestClient, alice: Account, bob: Account
) -> None:
    ids = [_create(client, alice, {"title": f"s{i}"})["session"]["id"] for i in range(5)]
    _create(client, bob)
    archived = ids[1]
    assert (
        client.patch(
            f"/api/sessions/{archived}", json={"status": "archived"}, headers=alice.headers
        ).status_code
        == 200
    )

    def listing(**params: Any) -> dict[str, Any]:
        r = client.get("/api/sessions", params=params, headers=alice.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    active = [s["id"] for s in listing()["sessions"]]
    assert active == [i for i in reversed(ids) if i != archived]
    assert [s["id"] for s in listing(status="archived")["sessions"]] == [archived]
    assert [s["id"] for s in listing(status="all")["sessions"]] == list(reversed(ids))

    seen: list[str] = []
    page = listing(status="all", limit=2)
    while True:
        seen += [s["id"] for s in page["sessions"]]
        if page["nextCursor"] is None:
            break
        page = listing(status="all", limit=2, cursor=page["nextCursor"])
    assert seen == list(reversed(ids))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"status": "gone"},
        {"cursor": "!!"},
        {"offset": -1},
        {"offset": "x"},
        {"offset": 2, "cursor": "abc"},
    ],
)
def test_list_rejects_bad_query(client: TestClient, alice: Account, params: dict[str, Any]) -> None:
    r = client.get("/api/sessions", params=params, headers=alice.headers)
    assert r.status_code == 400
    assert r.json()["status"] == "error"


def test_patch_updates_given_fields_only(client: TestClient, alice: Account) -> None:
    s = _create(client, alice, {"title": "before"})["session"]
    url = f"/api/sessions/{s['id']}"
    r = client.patch(url, json={"linesAdded": 7, "linesRemoved": 3}, headers=alice.headers)
    assert r.status_code == 200, r.text
    got = r.json()["session"]
    assert (got["title"], got["linesAdded"], got["linesRemoved"]) == ("before", 7, 3)
    assert got["updatedAt"] > s["updatedAt"]
    same = client.patch(url, headers=alice.headers)
    assert same.status_code == 200 and same.json()["session"] == got
    assert client.patch(url, json={}, headers=alice.headers).json()["session"] == got
    r = client.patch(url, json={"title": "after", "status": "completed"}, headers=alice.headers)
    assert (r.json()["session"]["title"], r.json()["session"]["status"]) == ("after", "completed")


@pytest.mark.parametrize(
    "body",
    [
        {"linesAdded": -1},
        {"linesAdded": "5"},
        {"linesAdded": 1.5},
        {"linesAdded": True},
        {"title": None},
        {"title": "   "},
        {"status": "paused"},
        {"lifecycleVersion": 999},
        {"userId": "00000000-0000-0000-0000-000000000000"},
        {"id": "x"},
        [],
        "text",
    ],
)
def test_patch_rejects_bad_input_and_changes_nothing(
    client: TestClient, alice: Account, body: Any
) -> None:
    s = _create(client, alice)["session"]
    url = f"/api/sessions/{s['id']}"
    r = client.patch(url, json=body, headers=alice.headers)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error" and "path" in r.json()
    assert client.get(url, headers=alice.headers).json()["session"] == s


def test_archive_and_unarchive(backend: Backend, client: TestClient, alice: Account) -> None:
    s = _create(client, alice)["session"]
    url = f"/api/sessions/{s['id']}"
    archived = client.patch(url, json={"status": "archived"}, headers=alice.headers).json()[
        "session"
    ]
    assert archived["status"] == "archived" and archived["lifecycleState"] == "archived"
    assert archived["lifecycleVersion"] == s["lifecycleVersion"] + 1
    assert archived["hibernateAfter"] is None and archived["lifecycleRunId"] is None

    # A sandbox still held with no snapshot: the stop has not finished → 409, nothing changes.
    with backend.db.write() as db:
        row = db.get(SessionRow, s["id"])
        assert row is not None
        row.sandbox_state = {"type": "local", "name": "x"}
    r = client.patch(url, json={"status": "running"}, headers=alice.headers)
    assert r.status_code == 409
    assert r.json()["error"] == "Sandbox is still being paused, try again in a few seconds."
    assert client.get(url, headers=alice.headers).json()["session"]["status"] == "archived"

    with backend.db.write() as db:
        row = db.get(SessionRow, s["id"])
        assert row is not None
        row.snapshot_url = "local://snapshots/x.tar.zst"
    back = client.patch(url, json={"status": "running"}, headers=alice.headers)
    assert back.status_code == 200
    assert back.json()["session"]["status"] == "running"
    assert back.json()["session"]["lifecycleState"] == "hibernated"


def test_delete_removes_session_and_chats(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    out = _create(client, alice)
    sid = out["session"]["id"]
    client.post(f"/api/sessions/{sid}/chats", json={"id": "second"}, headers=alice.headers)
    r = client.delete(f"/api/sessions/{sid}", headers=alice.headers)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert client.get(f"/api/sessions/{sid}", headers=alice.headers).status_code == 404
    with backend.db.read() as s:
        assert s.scalar(select(func.count()).where(Chat.session_id == sid)) == 0
    assert client.delete(f"/api/sessions/{sid}", headers=alice.headers).status_code == 404


def test_get_renders_exactly_what_fastapi_renders(client: TestClient, alice: Account) -> None:
    """GET /api/sessions/{id} renders its body itself (the hot path); an empty PATCH answers
    the same session through FastAPI's own response serialization: the bytes must agree."""
    sid = _create(client, alice, {"title": "bytes", "cloneUrl": "https://github.com/o/r.git"})[
        "session"
    ]["id"]
    got = client.get(f"/api/sessions/{sid}", headers=alice.headers)
    patched = client.patch(f"/api/sessions/{sid}", json={}, headers=alice.headers)
    assert got.status_code == patched.status_code == 200
    assert got.headers["content-type"] == patched.headers["content-type"] == "application/json"
    assert got.content == patched.content
    assert set(got.json()["session"]) == SEED_FIELDS | EXTRA_FIELDS


def test_lists_carry_the_cached_diffs_counts_without_its_hunks(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    sid = _create(client, alice)["session"]["id"]
    cached = {
        "files": [{"path": "a.py", "status": "modified", "additions": 1, "deletions": 1,
                   "binary": False, "generated": False, "diff": "@@ -1 +1 @@\n-a\n+b\n"}],
        "summary": {"totalFiles": 1, "totalAdditions": 1, "totalDeletions": 1},
        "baseRef": "HEAD", "truncated": False,
    }  # fmt: skip
    with backend.db.write() as db:
        row = db.get(SessionRow, sid)
        assert row is not None
        row.cached_diff = cached
    one = client.get(f"/api/sessions/{sid}", headers=alice.headers).json()["session"]
    assert one["cachedDiff"] == cached
    listed = client.get("/api/sessions", headers=alice.headers).json()["sessions"]
    (mine,) = [s for s in listed if s["id"] == sid]
    file = {k: v for k, v in cached["files"][0].items() if k != "diff"}  # type: ignore[index]
    assert mine["cachedDiff"] == {**cached, "files": [file]}


def test_list_has_the_reference_web_apps_fields_and_offset_paging(
    backend: Backend, client: TestClient, alice: Account, bob: Account
) -> None:
    """``GET /api/sessions`` as the open-agents web app reads it: ``archivedCount``,
    ``pagination {limit, offset, hasMore, nextOffset}``, and per session ``hasUnread``,
    ``hasStreaming`` and ``latestChatId``; ``?offset=`` pages like ``?cursor=``."""
    made = [_create(client, alice, {"title": f"s{i}"}) for i in range(4)]
    ids = [m["session"]["id"] for m in made]
    _create(client, bob)  # not counted anywhere
    for sid in ids[:2]:
        r = client.patch(f"/api/sessions/{sid}", json={"status": "archived"}, headers=alice.headers)
        assert r.status_code == 200
    busy = ids[3]
    r = client.post(f"/api/sessions/{busy}/chats", json={"id": "later"}, headers=alice.headers)
    assert r.status_code == 200
    with backend.db.write() as s:
        first = s.get(Chat, ChatKey(alice.id, made[3]["chat"]["id"]))
        assert first is not None
        first.active_stream_id = "run-x"  # a turn is live on the older chat
        first.last_assistant_message_at = utcnow()  # with a reply never read
        first.updated_at = utcnow() - timedelta(minutes=5)

    def listing(**params: Any) -> dict[str, Any]:
        r = client.get("/api/sessions", params=params, headers=alice.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    body = listing()
    assert body["archivedCount"] == 2
    assert body["pagination"] == {"limit": 50, "offset": 0, "hasMore": False, "nextOffset": 2}
    by_id = {s["id"]: s for s in body["sessions"]}
    assert set(by_id) == {ids[2], ids[3]}
    assert set(by_id[ids[3]]) == SEED_FIELDS | EXTRA_FIELDS | LIST_FIELDS
    assert (by_id[busy]["hasUnread"], by_id[busy]["hasStreaming"]) == (True, True)
    assert by_id[busy]["latestChatId"] == "later"  # the most recently updated chat
    quiet = by_id[ids[2]]
    assert (quiet["hasUnread"], quiet["hasStreaming"]) == (False, False)
    assert quiet["latestChatId"] == made[2]["chat"]["id"]
    r = client.post(
        f"/api/sessions/{busy}/chats/{made[3]['chat']['id']}/read", headers=alice.headers
    )
    assert r.status_code == 200
    assert [s["hasUnread"] for s in listing()["sessions"] if s["id"] == busy] == [False]

    # Offset paging through every session, newest first.
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = listing(status="all", limit=3, offset=offset)
        assert page["pagination"]["offset"] == offset and page["pagination"]["limit"] == 3
        seen += [s["id"] for s in page["sessions"]]
        more = page["pagination"]["hasMore"]
        assert page["pagination"]["nextOffset"] == offset + len(page["sessions"])
        assert (page["nextCursor"] is not None) == more
        offset = page["pagination"]["nextOffset"] if more else None
    assert seen == list(reversed(ids))
    archived = listing(status="archived", limit=1, offset=1)
    assert [s["id"] for s in archived["sessions"]] == [ids[0]]
    assert archived["pagination"] == {"limit": 1, "offset": 1, "hasMore": False, "nextOffset": 2}
    # Paged by cursor, the offset is unknown: null.
    by_cursor = listing(status="all", limit=3, cursor=listing(status="all", limit=3)["nextCursor"])
    assert [s["id"] for s in by_cursor["sessions"]] == [ids[0]]
    assert by_cursor["pagination"]["offset"] is None
    assert by_cursor["pagination"]["nextOffset"] is None


def test_list_runs_the_same_queries_whatever_the_page_holds(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    """No query per session: a page of 6 sessions with chats costs what a page of 1 does."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def queries() -> int:
        statements.clear()
        event.listen(backend.db.engine, "before_cursor_execute", count)
        try:
            r = client.get("/api/sessions", headers=alice.headers)
        finally:
            event.remove(backend.db.engine, "before_cursor_execute", count)
        assert r.status_code == 200
        return len(statements)

    first = _create(client, alice)
    client.post(
        f"/api/sessions/{first['session']['id']}/chats", json={"id": "x"}, headers=alice.headers
    )
    one = queries()
    for _ in range(5):
        sid = _create(client, alice)["session"]["id"]
        client.post(f"/api/sessions/{sid}/chats", json={}, headers=alice.headers)
    assert queries() == one
    assert sum("FROM chats" in s for s in statements) == 1
