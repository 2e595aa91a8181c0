"""Every route × {no credentials, bad key, revoked key, another account, unknown id}.

Each failing call must answer the right code in the error shape and change nothing: the whole
database is fingerprinted before and after (API2/BOLA of the checklist), and the lifecycle is
never asked to act (no workflow is started for a refused call).

The routes come from the real app's route table (``create_app``), not from a list kept here:
a route under ``/api`` without an entry in :data:`ROUTES` fails, so a new route cannot be left
out of the matrix (the ``/sandbox`` routes once were, and nothing noticed when their ownership
check was gone).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from agent_sessions.api import create_app
from agent_sessions.settings import Settings
from agent_sessions.store import Database, accounts, turns
from agent_sessions.store.models import ApiKey, Base, ChatKey
from tests.conftest import Account, Backend, InertLifecycle, make_account

USER_MESSAGE = {"id": "m-1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
NO_ACCESS = "You do not have access to this session"
NOT_FOUND = {
    "sessionId": "Session not found",
    "chatId": "Chat not found",
    "runId": "Run not found",
    "messageId": "Message not found",
}
"""What a lookup of each kind of id answers when there is no such one (404)."""


@dataclass(frozen=True)
class Case:
    """How the matrix calls one route, and what another account must get from it.

    ``body`` may hold ``"{sessionId}"`` and ``"{chatId}"``, filled in like the path.
    ``foreign`` is the answer to another account's call on Alice's ids: 403 where the route
    names her session (or a run of it), 404 where it names a chat by id alone (chat ids are
    per account, ADR 9: a 403 would tell that she has one), None where the route names
    nothing of anyone's (the caller's own list, a create, the models).
    ``looks_up`` are the ids the route must find (404 when unknown): the path's, by default.
    """

    body: Any = None
    foreign: int | None = 403
    looks_up: tuple[str, ...] | None = None
    query: dict[str, str] | None = None
    """Query parameters, filled in like the body (open-agents' routes name the session so)."""


ROUTES: dict[str, Case] = {
    "POST /api/sessions": Case({"title": "x"}, foreign=None),
    "GET /api/sessions": Case(foreign=None),
    "GET /api/sessions/{sessionId}": Case(),
    "PATCH /api/sessions/{sessionId}": Case({"title": "changed", "status": "archived"}),
    "DELETE /api/sessions/{sessionId}": Case(),
    "GET /api/sessions/{sessionId}/chats": Case(),
    "POST /api/sessions/{sessionId}/chats": Case({"id": "new-chat"}),
    "GET /api/sessions/{sessionId}/chats/{chatId}": Case(),
    "PATCH /api/sessions/{sessionId}/chats/{chatId}": Case({"title": "changed"}),
    "DELETE /api/sessions/{sessionId}/chats/{chatId}": Case(),
    "POST /api/sessions/{sessionId}/chats/{chatId}/read": Case(),
    "DELETE /api/sessions/{sessionId}/chats/{chatId}/messages/{messageId}": Case(),
    "POST /api/sessions/{sessionId}/chats/{chatId}/messages": Case(
        {"id": "a-9", "role": "assistant", "parts": [{"type": "text", "text": "x"}]}
    ),
    "POST /api/sessions/{sessionId}/chats/{chatId}/fork": Case({"messageId": "m-a"}),
    "GET /api/sessions/{sessionId}/sandbox": Case(),
    "POST /api/sessions/{sessionId}/sandbox/hibernate": Case(),
    "POST /api/sessions/{sessionId}/sandbox/resume": Case({"expectedLifecycleVersion": 0}),
    "POST /api/sessions/{sessionId}/sandbox/extend": Case(),
    "POST /api/sessions/{sessionId}/sandbox/activity": Case(),
    "GET /api/sessions/{sessionId}/files": Case(),
    "GET /api/sessions/{sessionId}/files/content": Case(),
    "PUT /api/sessions/{sessionId}/files/content": Case("raw body: any bytes"),
    "GET /api/sessions/{sessionId}/files/archive": Case(),
    "GET /api/sessions/{sessionId}/skills": Case(),
    "PUT /api/sessions/{sessionId}/skills": Case({"globalSkillRefs": []}),
    "GET /api/sessions/{sessionId}/diff": Case(),
    "GET /api/sessions/{sessionId}/diff/cached": Case(),
    "POST /api/chat": Case(
        {"id": "{chatId}", "sessionId": "{sessionId}", "messages": [USER_MESSAGE]},
        looks_up=("sessionId",),
    ),
    "GET /api/chat/{chatId}/stream": Case(foreign=404),
    "POST /api/chat/{chatId}/stop": Case(foreign=404),
    "POST /api/chat/runs": Case(
        {"sessionId": "{sessionId}", "prompt": "hi"}, looks_up=("sessionId",)
    ),
    "GET /api/chat/runs/{runId}": Case(),
    "GET /api/runs": Case(foreign=None, looks_up=()),
    "POST /api/sandbox": Case({"sessionId": "{sessionId}"}, looks_up=("sessionId",)),
    "DELETE /api/sandbox": Case({"sessionId": "{sessionId}"}, looks_up=("sessionId",)),
    "GET /api/sandbox/status": Case(query={"sessionId": "{sessionId}"}, looks_up=("sessionId",)),
    "GET /api/sandbox/reconnect": Case(query={"sessionId": "{sessionId}"}, looks_up=("sessionId",)),
    "POST /api/sandbox/extend": Case({"sessionId": "{sessionId}"}, looks_up=("sessionId",)),
    "POST /api/sandbox/activity": Case({"sessionId": "{sessionId}"}, looks_up=("sessionId",)),
    "GET /api/models": Case(foreign=None),
    "POST /api/sessions/{sessionId}/pr": Case({"title": "x", "draft": True}),
    "GET /api/sessions/{sessionId}/pr": Case(),
    "POST /api/sessions/{sessionId}/pr/merge": Case({"method": "squash"}),
    "POST /api/sessions/{sessionId}/pr/close": Case(),
    "GET /api/sessions/{sessionId}/git/status": Case(),
    "POST /api/sessions/{sessionId}/git/commit": Case({"message": "x", "chatId": "{chatId}"}),
    "POST /api/sessions/{sessionId}/discard-uncommitted": Case({"filePath": "a.txt"}),
    "GET /api/account/forge-token": Case(foreign=None),
    "PUT /api/account/forge-token": Case({"token": "ghp_x"}, foreign=None),
    "DELETE /api/account/forge-token": Case(foreign=None),
    "GET /api/account/default-model": Case(foreign=None),
    "PUT /api/account/default-model": Case({"modelId": "demo/echo"}, foreign=None),
    "DELETE /api/account/default-model": Case(foreign=None),
    "POST /api/sessions/{sessionId}/git/push": Case(),
    "GET /api/usage": Case(foreign=None),
    "GET /api/sessions/{sessionId}/usage": Case(),
    "GET /api/sessions/{sessionId}/chats/{chatId}/usage": Case(),
}
"""Every route under /api: a sample call and who owns what it names."""

PUBLIC = {
    "GET /healthz",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "GET /",
    "GET /console/{path:path}",
    "GET /metrics",
}
"""Routes outside /api, answered without credentials (the console's files hold no data: it
asks for an API key and sends it to /api; /metrics holds counts, no account's data, and can be
given a token or turned off: README, Operating)."""


def app_routes() -> list[str]:
    """``METHOD path`` of every route the real app serves (HEAD aside).

    ``app.routes`` alone holds one opaque entry per included router in this FastAPI (no path,
    no methods): a loop over it finds nothing and would check nothing. FastAPI's own walk over
    the route table resolves them, with the include prefixes applied.
    """
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        db = Database(settings.resolved_database_url)
        try:
            app = create_app(settings, db=db, lifecycle=InertLifecycle(settings, db))
            found = []
            for route in iter_route_contexts(app.routes):
                if route.path is None or not route.methods:
                    raise AssertionError(f"a route without a path or methods: {route!r}")
                found += [f"{m} {route.path}" for m in sorted(route.methods) if m != "HEAD"]
        finally:
            db.dispose()
    return list(dict.fromkeys(found))  # a hot read is also a direct route (api/direct.py)


APP_ROUTES = app_routes()
API_ROUTES = [r for r in APP_ROUTES if r.split(" ", 1)[1].startswith("/api/")]


def case_of(route: str) -> Case:
    if route not in ROUTES:
        pytest.fail(
            f"{route} has no entry in ROUTES of tests/test_access_matrix.py: add one (a sample "
            "body, and what another account must get) so that its access rules are tested"
        )
    return ROUTES[route]


def test_every_route_is_in_the_matrix() -> None:
    """Both ways: no route of the app is missing here, no entry here names a route the app
    does not have (which also fails if the route table ever reads as empty)."""
    missing = [r for r in API_ROUTES if r not in ROUTES]
    assert not missing, f"routes with no entry in ROUTES: {missing}"
    assert sorted(ROUTES) == sorted(API_ROUTES)
    assert sorted(set(APP_ROUTES) - set(API_ROUTES)) == sorted(PUBLIC)


class RecordingLifecycle(InertLifecycle):
    """The inert lifecycle, noting every request made of it: a refused call must make none."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[str] = []

    async def session_created(self, session_id: str) -> None:
        self.calls.append("session_created")

    async def session_archived(self, session_id: str, version: int) -> None:
        self.calls.append("session_archived")

    async def session_deleted(self, *args: Any) -> None:
        self.calls.append("session_deleted")

    async def status(self, session_id: str) -> Any:
        self.calls.append("status")
        return await super().status(session_id)

    async def activity(self, session_id: str, expected_version: int | None) -> Any:
        self.calls.append("activity")
        return await super().activity(session_id, expected_version)

    async def extend(self, session_id: str, expected_version: int | None) -> Any:
        self.calls.append("extend")
        return await super().extend(session_id, expected_version)

    async def hibernate(self, session_id: str, expected_version: int | None) -> Any:
        self.calls.append("hibernate")
        return await super().hibernate(session_id, expected_version)

    async def resume(self, session_id: str, expected_version: int | None) -> Any:
        self.calls.append("resume")
        return await super().resume(session_id, expected_version)

    async def ensure_active(self, session_id: str, timeout: float = 600.0) -> Any:  # noqa: ASYNC109
        self.calls.append("ensure_active")
        return await super().ensure_active(session_id, timeout)


@pytest.fixture
def lifecycle(backend: Backend) -> RecordingLifecycle:
    return RecordingLifecycle(backend.settings(), backend.db)


@pytest.fixture
def client(backend: Backend, lifecycle: RecordingLifecycle) -> Any:
    """The app of ``tests.conftest.client``, with the recording lifecycle."""
    app = create_app(backend.settings(), db=backend.db, lifecycle=lifecycle)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def fingerprint(backend: Backend) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Every row of every table, except the throttled key ``last_used_at``."""
    out = []
    with backend.db.read() as s:
        for table in Base.metadata.sorted_tables:
            cols = [
                c
                for c in table.columns
                if not (table.name == "api_keys" and c.name == "last_used_at")
            ]
            rows = s.execute(select(*cols).order_by(*table.primary_key.columns)).all()
            out.append((table.name, [tuple(r) for r in rows]))
    return out


@pytest.fixture
def world(backend: Backend, client: TestClient) -> dict[str, Any]:
    """Alice owns a session with two chats and a finished run, and another session; Bob
    exists; a revoked key exists."""
    alice = make_account(backend.db, "alice")
    bob = make_account(backend.db, "bob")
    revoked = make_account(backend.db, "revoked")
    with backend.db.write() as s:
        key_id = s.scalars(select(ApiKey.id).where(ApiKey.account_id == revoked.id)).one()
        accounts.revoke_key(s, key_id)
    created = client.post("/api/sessions", json={}, headers=alice.headers).json()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    client.post(f"/api/sessions/{sid}/chats", json={"id": f"extra-{sid}"}, headers=alice.headers)
    other = client.post("/api/sessions", json={}, headers=alice.headers).json()
    rid = f"run-{sid}"
    with backend.db.write() as s:
        turns.create_run(
            s, id=rid, chat_id=cid, session_id=sid, account_id=alice.id, model_id="openai/x",
            assistant_message_id="a-1",
        )  # fmt: skip
        for mid, role in (("m-u", "user"), ("m-a", "assistant")):  # to delete, to fork through
            message = {"id": mid, "role": role, "parts": [{"type": "text", "text": mid}]}
            turns.upsert_message(s, chat=ChatKey(alice.id, cid), message_id=mid, role=role,
                                 message=message)  # fmt: skip
    return {
        "alice": alice,
        "bob": bob,
        "revoked": revoked,
        "sid": sid,
        "cid": cid,
        "rid": rid,
        "other_cid": other["chat"]["id"],
    }


def _ids(w: dict[str, Any], **over: str) -> dict[str, str]:
    return {
        "sessionId": w["sid"], "chatId": w["cid"], "runId": w["rid"], "messageId": "m-u",
        **over,
    }  # fmt: skip


def _filled(value: Any, ids: dict[str, str]) -> Any:
    if value is None:
        return None
    raw = json.dumps(value)
    for name, id_ in ids.items():
        raw = raw.replace("{" + name + "}", id_)
    return json.loads(raw)


def _call(client: TestClient, route: str, headers: dict[str, str], ids: dict[str, str]) -> Any:
    method, path = route.split(" ", 1)
    case = case_of(route)
    return client.request(
        method, path.format(**ids), json=_filled(case.body, ids),
        params=_filled(case.query, ids), headers=headers,
    )  # fmt: skip


def _refused(
    backend: Backend,
    client: TestClient,
    lifecycle: RecordingLifecycle,
    route: str,
    headers: dict[str, str],
    ids: dict[str, str],
) -> Any:
    """Make the call; check that it changed nothing and asked nothing of the lifecycle."""
    before = fingerprint(backend)
    lifecycle.calls.clear()
    r = _call(client, route, headers, ids)
    assert fingerprint(backend) == before, r.text
    assert lifecycle.calls == [], r.text
    return r


CREDENTIAL_CASES = {
    "no-credentials": lambda w: {},
    "bad-key": lambda w: {"x-api-key": "ask_" + "B" * 43},
    "revoked-key": lambda w: {"x-api-key": w["revoked"].key},
    "bad-bearer": lambda w: {"authorization": "Bearer definitely-not-valid"},
}


@pytest.mark.parametrize("route", API_ROUTES)
def test_bad_credentials_401_no_side_effect(
    backend: Backend,
    client: TestClient,
    lifecycle: RecordingLifecycle,
    world: dict[str, Any],
    route: str,
) -> None:
    for case, headers in CREDENTIAL_CASES.items():
        r = _refused(backend, client, lifecycle, route, headers(world), _ids(world))
        assert r.status_code == 401, (case, r.text)
        assert r.json()["status"] == "error", case


@pytest.mark.parametrize(
    "route", [r for r in API_ROUTES if r not in ROUTES or ROUTES[r].foreign is not None]
)
def test_another_accounts_ids_are_refused_no_side_effect(
    backend: Backend,
    client: TestClient,
    lifecycle: RecordingLifecycle,
    world: dict[str, Any],
    route: str,
) -> None:
    bob: Account = world["bob"]
    r = _refused(backend, client, lifecycle, route, bob.headers, _ids(world))
    expected = case_of(route).foreign
    assert r.status_code == expected, r.text
    message = NO_ACCESS if expected == 403 else NOT_FOUND["chatId"]
    assert r.json() == {"status": "error", "error": message}


UNKNOWN = {
    "sessionId": "NoSuchSession_123456", "chatId": "no-such-chat", "runId": "run-nope",
    "messageId": "no-such-message",
}  # fmt: skip


def _lookups() -> list[tuple[str, str]]:
    """(route, id name) for each id each route must find; a route with no entry is listed
    once, to fail."""
    out = []
    for route in API_ROUTES:
        case = ROUTES.get(route)
        if case is None:
            out.append((route, "sessionId"))
        elif case.looks_up is not None:
            out += [(route, name) for name in case.looks_up]
        else:
            out += [(route, name) for name in re.findall(r"{(\w+)}", route)]
    return out


@pytest.mark.parametrize(("route", "name"), _lookups())
def test_unknown_ids_are_404_no_side_effect(
    backend: Backend,
    client: TestClient,
    lifecycle: RecordingLifecycle,
    world: dict[str, Any],
    route: str,
    name: str,
) -> None:
    case_of(route)
    alice: Account = world["alice"]
    r = _refused(
        backend, client, lifecycle, route, alice.headers, _ids(world, **{name: UNKNOWN[name]})
    )
    assert r.status_code == 404, r.text
    assert r.json() == {"status": "error", "error": NOT_FOUND[name]}


@pytest.mark.parametrize("route", [r for r in API_ROUTES if "{sessionId}/chats/{chatId}" in r])
def test_another_sessions_chat_is_404_no_side_effect(
    backend: Backend,
    client: TestClient,
    lifecycle: RecordingLifecycle,
    world: dict[str, Any],
    route: str,
) -> None:
    alice: Account = world["alice"]
    ids = _ids(world, chatId=world["other_cid"])
    r = _refused(backend, client, lifecycle, route, alice.headers, ids)
    assert r.status_code == 404, r.text
    assert r.json() == {"status": "error", "error": "Chat not found"}


def test_fingerprint_sees_changes(
    backend: Backend, client: TestClient, world: dict[str, Any]
) -> None:
    """Guard for the oracle above: a successful call does change the fingerprint."""
    before = fingerprint(backend)
    alice: Account = world["alice"]
    r = client.patch(f"/api/sessions/{world['sid']}", json={"title": "t2"}, headers=alice.headers)
    assert r.status_code == 200
    assert fingerprint(backend) != before
    with backend.db.read() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1


def test_the_lifecycle_record_sees_calls(
    client: TestClient, lifecycle: RecordingLifecycle, world: dict[str, Any]
) -> None:
    """Guard for the other oracle: Alice's own sandbox status does reach the lifecycle."""
    lifecycle.calls.clear()
    alice: Account = world["alice"]
    r = client.get(f"/api/sessions/{world['sid']}/sandbox", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert lifecycle.calls == ["status"]
