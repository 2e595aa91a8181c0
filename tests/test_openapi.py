"""``/openapi.json`` against the Sessions API contract and the seed document
(``tests/data/seed-get-session.md``).

The seed is OpenAPI 3.1 written in 3.0 style (``nullable: true``); ours is what Pydantic emits
(``anyOf [..., {type: null}]``, ``const`` for one-value enums). Both are reduced to the same
plain shape (types, format, enum, items, additionalProperties) before comparing, so the test
checks meaning, not spelling.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

SEED = Path(__file__).parent / "data" / "seed-get-session.md"
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "options", "head", "trace"}

# the Sessions API contract and "Chats" plus /healthz: the least the document must contain.
EXPECTED_OPERATIONS = {
    ("get", "/healthz"),
    ("post", "/api/sessions"),
    ("get", "/api/sessions"),
    ("get", "/api/sessions/{sessionId}"),
    ("patch", "/api/sessions/{sessionId}"),
    ("delete", "/api/sessions/{sessionId}"),
    ("get", "/api/sessions/{sessionId}/chats"),
    ("post", "/api/sessions/{sessionId}/chats"),
    ("get", "/api/sessions/{sessionId}/chats/{chatId}"),
    ("patch", "/api/sessions/{sessionId}/chats/{chatId}"),
    ("delete", "/api/sessions/{sessionId}/chats/{chatId}"),
    ("post", "/api/sessions/{sessionId}/chats/{chatId}/read"),
}
UNAUTHENTICATED = {("get", "/healthz")}


def _seed() -> dict[str, Any]:
    match = re.search(r"^````yaml[^\n]*\n(.*?)^````", SEED.read_text(), re.S | re.M)
    assert match, f"no yaml block in {SEED}"
    doc: dict[str, Any] = yaml.safe_load(match.group(1))
    return doc


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = doc["components"]["schemas"][name]
    return schema


def _shape(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Reduce a property schema to what a client relies on, whichever OpenAPI dialect wrote it."""
    schema = _resolve(doc, schema)
    variants = [_resolve(doc, v) for v in schema.get("anyOf") or schema.get("oneOf") or [schema]]
    types: set[str] = set()
    formats: set[str] = set()
    enum: set[Any] | None = None
    items: dict[str, Any] | None = None
    additional: Any = None
    for v in variants:
        declared = v.get("type")
        types.update([declared] if isinstance(declared, str) else declared or [])
        if v.get("nullable"):
            types.add("null")
        if "format" in v:
            formats.add(v["format"])
        values = v.get("enum", [v["const"]] if "const" in v else None)
        if values is not None:
            enum = (enum or set()) | {x for x in values if x is not None}
        if "items" in v:
            items = _shape(doc, v["items"])
        if "additionalProperties" in v:
            additional = v["additionalProperties"]
    return {
        "types": types,
        "formats": formats,
        "enum": enum,
        "items": items,
        "additionalProperties": additional,
    }


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    """The document as an unauthenticated client downloads it."""
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def test_served_without_auth_as_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"]


def test_documents_every_route(client: TestClient, spec: dict[str, Any]) -> None:
    documented = set(_operations(spec))
    assert documented >= EXPECTED_OPERATIONS, EXPECTED_OPERATIONS - documented
    app_routes = {
        (method.lower(), path)
        for ctx in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if (path := ctx.path_format or "").startswith("/api/") or path == "/healthz"
        for method in ctx.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    assert app_routes - documented == set(), "routes missing from /openapi.json"


def test_named_schemas_exist(spec: dict[str, Any]) -> None:
    assert {"Session", "Chat", "ChatSummary", "Error"} <= set(spec["components"]["schemas"])


def test_session_matches_the_seed(spec: dict[str, Any]) -> None:
    seed = _seed()
    theirs = seed["components"]["schemas"]["Session"]
    ours = spec["components"]["schemas"]["Session"]
    extra = {"autoCommitPush", "autoCreatePr", "prNumber", "prStatus", "baseBranch"}  # ADR 13
    assert set(ours["properties"]) == set(theirs["properties"]) | extra
    # The contract: every field is always present (null where unknown), so all are required.
    assert set(ours["required"]) == set(theirs["properties"]) | extra
    for name, prop in theirs["properties"].items():
        assert _shape(spec, ours["properties"][name]) == _shape(seed, prop), name


def test_get_session_response_matches_the_seed(spec: dict[str, Any]) -> None:
    seed = _seed()
    theirs = seed["paths"]["/api/sessions/{sessionId}"]["get"]
    ours = spec["paths"]["/api/sessions/{sessionId}"]["get"]
    assert set(theirs["responses"]) <= set(ours["responses"])
    body = _resolve(spec, ours["responses"]["200"]["content"]["application/json"]["schema"])
    assert body["required"] == ["session"]
    assert _resolve(spec, body["properties"]["session"]) is spec["components"]["schemas"]["Session"]
    for code in ("401", "403", "404"):
        err = ours["responses"][code]["content"]["application/json"]["schema"]
        assert err == {"$ref": "#/components/schemas/Error"}


def test_error_matches_the_seed_plus_optional_path(spec: dict[str, Any]) -> None:
    seed = _seed()
    theirs = seed["components"]["schemas"]["Error"]
    ours = spec["components"]["schemas"]["Error"]
    assert set(ours["required"]) == set(theirs["required"]) == {"status", "error"}
    assert set(ours["properties"]) == {*theirs["properties"], "path"}
    for name, prop in theirs["properties"].items():
        assert _shape(spec, ours["properties"][name]) == _shape(seed, prop), name
    path = _shape(spec, ours["properties"]["path"])
    assert "array" in path["types"]
    assert path["items"] is not None
    assert path["items"]["types"] == {"string", "integer"}


def test_chat_schemas(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    chat_fields = {
        "id", "sessionId", "title", "modelId", "activeStreamId", "lastAssistantMessageAt",
        "approvalRules", "createdAt", "updatedAt",
    }  # fmt: skip
    assert set(schemas["Chat"]["properties"]) == set(schemas["Chat"]["required"]) == chat_fields
    summary = schemas["ChatSummary"]
    assert (
        set(summary["properties"])
        == set(summary["required"])
        == {
            *chat_fields,
            "hasUnread",
            "isStreaming",
            "pendingApprovals",
            "pendingQuestions",
        }
    )
    detail = schemas["ChatDetail"]
    assert {"pendingApprovals", "pendingQuestions"} <= set(detail["required"])
    pending = schemas["PendingApproval"]
    assert set(pending["required"]) == {"approvalId", "toolCallId", "toolName", "input"}
    assert set(schemas["ApprovalRuleIn"]["properties"]) == {"tool", "match"}
    for name in ("createdAt", "updatedAt"):
        assert _shape(spec, schemas["Chat"]["properties"][name])["formats"] == {"date-time"}
    assert _shape(spec, schemas["Chat"]["properties"]["modelId"])["types"] == {"string", "null"}


def test_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert schemes["BearerAuth"]["type"] == "http"
    assert schemes["BearerAuth"]["scheme"].lower() == "bearer"
    for key, op in _operations(spec).items():
        if key in UNAUTHENTICATED:
            assert not op.get("security"), key
            continue
        names = {name for requirement in op.get("security", []) for name in requirement}
        assert names == {"ApiKeyAuth", "BearerAuth"}, key
        assert "401" in op["responses"], key


def test_no_422_documented(spec: dict[str, Any]) -> None:
    for key, op in _operations(spec).items():
        assert "422" not in op["responses"], key
        if op.get("requestBody") or op.get("parameters"):
            assert "400" in op["responses"], key
            err = op["responses"]["400"]["content"]["application/json"]["schema"]
            assert err == {"$ref": "#/components/schemas/Error"}, key
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "ValidationError" not in spec["components"]["schemas"]


def test_every_write_documents_429_with_retry_after(spec: dict[str, Any]) -> None:
    """The account limits answer writes (and only writes) with 429 and Retry-After."""
    writes = 0
    for (method, path), op in _operations(spec).items():
        if path.startswith("/api/") and method in {"post", "put", "patch", "delete"}:
            writes += 1
            too_many = op["responses"]["429"]
            assert too_many["headers"]["Retry-After"]["schema"]["type"] == "integer", path
            err = too_many["content"]["application/json"]["schema"]
            assert err == {"$ref": "#/components/schemas/Error"}, (method, path)
        else:
            assert "429" not in op["responses"], (method, path)
    assert writes >= 10
