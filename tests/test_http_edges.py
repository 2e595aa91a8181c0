"""Malformed input, size limits, unknown routes, methods and CORS — all in the error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent_sessions.store.models import SessionRow
from tests.conftest import Account, Backend, api_app

LIMIT = 4096


@pytest.fixture
def small_client(backend: Backend) -> Iterator[TestClient]:
    with TestClient(api_app(backend, max_body_bytes=LIMIT)) as c:
        yield c


def _count(backend: Backend, account: Account) -> int:
    with backend.db.read() as s:
        return int(s.scalar(select(func.count()).where(SessionRow.account_id == account.id)) or 0)


@pytest.mark.parametrize("raw", [b"{", b'{"title": }', b"\xff\xfe", b'{"title": "x"} trailing'])
def test_malformed_json_is_400(
    backend: Backend, client: TestClient, alice: Account, raw: bytes
) -> None:
    headers = {**alice.headers, "content-type": "application/json"}
    r = client.post("/api/sessions", content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error" and "JSON" in r.json()["error"]
    assert _count(backend, alice) == 0


def test_non_json_content_type_is_400(backend: Backend, client: TestClient, alice: Account) -> None:
    headers = {**alice.headers, "content-type": "application/x-www-form-urlencoded"}
    r = client.post("/api/sessions", content=b'{"title":"x"}', headers=headers)
    assert r.status_code == 400
    assert "Content-Type: application/json" in r.json()["error"]
    assert _count(backend, alice) == 0


def test_oversized_body_with_length_is_413(
    backend: Backend, small_client: TestClient, alice: Account
) -> None:
    body = b'{"title": "' + b"x" * LIMIT + b'"}'
    headers = {**alice.headers, "content-type": "application/json"}
    r = small_client.post("/api/sessions", content=body, headers=headers)
    assert r.status_code == 413
    assert r.json()["status"] == "error" and str(LIMIT) in r.json()["error"]
    assert _count(backend, alice) == 0


def test_oversized_chunked_body_is_413(
    backend: Backend, small_client: TestClient, alice: Account
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"title": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    headers = {**alice.headers, "content-type": "application/json"}
    r = small_client.post("/api/sessions", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert r.json()["status"] == "error"
    assert _count(backend, alice) == 0


def test_body_just_under_limit_is_fine(small_client: TestClient, alice: Account) -> None:
    r = small_client.post("/api/sessions", json={"title": "x" * 400}, headers=alice.headers)
    assert r.status_code == 200


def test_unknown_route_and_method_use_error_shape(client: TestClient, alice: Account) -> None:
    r = client.get("/api/nope", headers=alice.headers)
    assert r.status_code == 404 and r.json() == {"status": "error", "error": "Not Found"}
    r = client.put("/api/sessions", headers=alice.headers)
    assert r.status_code == 405 and r.json()["status"] == "error"


@pytest.mark.parametrize(
    "path",
    [
        "/api/sessions",
        "/api/sessions/x",
        "/api/sessions/x/chats",
        "/api/sessions/x/chats/y",
        "/api/sessions/x/chats/y/read",
        "/healthz",
        "/api/anything",
    ],
)
def test_cors_preflight_answers_200(client: TestClient, path: str) -> None:
    r = client.options(
        path,
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "PATCH",
            "access-control-request-headers": "x-api-key, content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "x-api-key" in r.headers["access-control-allow-headers"]
    assert "PATCH" in r.headers["access-control-allow-methods"]


def test_cors_origin_allowlist(backend: Backend, alice: Account) -> None:
    app = api_app(backend, cors_origins=["https://ok.example"])
    with TestClient(app) as c:
        ok = c.get("/api/sessions", headers={**alice.headers, "origin": "https://ok.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ok.example"
        bad = c.get("/api/sessions", headers={**alice.headers, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in bad.headers


def test_health_and_openapi_need_no_credentials(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/openapi.json").status_code == 200


def test_unexpected_errors_are_500_in_error_shape(backend: Backend, alice: Account) -> None:
    app = api_app(backend)

    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/api/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/boom")
    assert r.status_code == 500
    assert r.json() == {"status": "error", "error": "Internal server error"}


def test_sandbox_read_errors_answer_413_and_400_in_the_error_shape() -> None:
    """What a route that reads sandbox files (the files API) answers for a file over its limit
    and for a bad byte range."""
    from fastapi import FastAPI

    from agent_sessions.api import errors
    from agent_sessions.sandbox import FileTooLarge, InvalidRange

    app = FastAPI()
    errors.install(app)

    @app.get("/big")
    async def big() -> None:
        raise FileTooLarge("f.bin", 10, 11)

    @app.get("/range")
    async def bad_range() -> None:
        raise InvalidRange("invalid byte range: offset -1, length None")

    with TestClient(app) as c:
        r = c.get("/big")
        assert (r.status_code, r.json()) == (
            413,
            {"status": "error", "error": "f.bin is larger than 10 bytes (11 bytes)"},
        )
        assert c.get("/range").status_code == 400
