"""The hot reads' direct routes (``api/direct.py``) answer as the FastAPI routes they shadow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from agent_sessions.api.direct import direct_routes
from agent_sessions.api.routes import chats, sessions
from tests.conftest import Account, Backend, api_app

DIRECT = {
    "/api/sessions/{sessionId}",
    "/api/sessions/{sessionId}/chats",
    "/api/sessions/{sessionId}/chats/{chatId}",
}


def _direct(route: object) -> bool:
    return type(route) is Route and route.path.startswith("/api/")


@pytest.fixture
def fastapi_only(backend: Backend) -> Iterator[TestClient]:
    """The same app with its direct routes taken out: every request goes through FastAPI."""
    app = api_app(backend)
    app.router.routes = [r for r in app.router.routes if not _direct(r)]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_the_hot_reads_are_direct(client: TestClient) -> None:
    app = client.app
    assert {r.path for r in app.router.routes if _direct(r)} == DIRECT  # type: ignore[attr-defined]
    schema_paths = client.get("/openapi.json").json()["paths"]
    assert all("get" in schema_paths[p] for p in DIRECT)


def test_direct_and_fastapi_answers_are_the_same(
    client: TestClient, fastapi_only: TestClient, alice: Account, bob: Account
) -> None:
    created = client.post("/api/sessions", json={"title": "t"}, headers=alice.headers).json()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    bearer = {"authorization": f"Bearer {alice.key}"}
    cases: list[tuple[str, str, dict[str, str]]] = []
    for path in (f"/api/sessions/{sid}", f"/api/sessions/{sid}/chats",
                 f"/api/sessions/{sid}/chats/{cid}"):  # fmt: skip
        cases += [
            ("GET", path, alice.headers),  # 200
            ("GET", path, bearer),  # 200
            ("GET", path, bob.headers),  # 403
            ("GET", path, {}),  # 401
            ("GET", path, {"x-api-key": "ask_" + "A" * 43}),  # 401
            ("GET", path, {"authorization": "Basic eDp5"}),  # 401
            ("HEAD", path, alice.headers),  # 405
            ("GET", path + "/", alice.headers),  # redirect or another route
        ]
    cases += [
        ("GET", "/api/sessions/nope", alice.headers),  # 404
        ("GET", "/api/sessions/nope/chats", alice.headers),
        ("GET", f"/api/sessions/{sid}/chats/nope", alice.headers),
        ("GET", "/api/sessions/a%00b", alice.headers),
    ]
    statuses = set()
    for method, path, headers in cases:
        direct = client.request(method, path, headers=headers, follow_redirects=False)
        routed = fastapi_only.request(method, path, headers=headers, follow_redirects=False)
        where = f"{method} {path} {sorted(headers)}"
        assert direct.status_code == routed.status_code, where
        assert direct.content == routed.content, where
        for header in ("content-type", "www-authenticate", "allow", "location"):
            assert direct.headers.get(header) == routed.headers.get(header), (where, header)
        statuses.add(direct.status_code)
    assert {200, 401, 403, 404, 405} <= statuses


def test_a_route_with_other_inputs_is_refused() -> None:
    """``GET /api/sessions`` has query parameters: served directly, it would ignore them."""
    with pytest.raises(ValueError, match="inputs beyond"):
        direct_routes([sessions.router], [sessions.list_sessions])
    with pytest.raises(ValueError, match="no GET route"):
        direct_routes([sessions.router], [chats.get_chat])
    assert all(isinstance(r, APIRoute) for r in chats.router.routes)
