"""Property-based run of schemathesis over the app's own ``/openapi.json``, on the ASGI app.

Every operation gets a bounded, derandomised batch of positive (schema-valid) and negative
(schema-invalid) requests, authenticated as a real account. Generated path ids alone would only
ever reach 404, so most examples swap in real ids: a fresh session of the caller (with its first
chat or a second one, so DELETE can succeed), or another account's session (403).

Checked on every response: no 5xx, status code documented, content type documented, body valid
against the documented schema, documented headers present, and schema-invalid input refused
(4xx). ``positive_data_acceptance`` is left out on purpose: some rules are deliberately stricter
than a JSON schema can say (a chat id without whitespace, "at least one of title or modelId"),
and those answer the documented 400.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Account

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_OPERATION = 25

# Which ids a case is sent with (drawn per example).
GENERATED, OWN_SESSION, OWN_SECOND_CHAT, OTHERS_SESSION = range(4)


def _new_session(client: TestClient, who: Account) -> tuple[str, str]:
    r = client.post("/api/sessions", json={}, headers=who.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["session"]["id"], body["chat"]["id"]


def _authenticate(case: Case, caller: Account) -> None:
    """Send the caller's key, unless the headers are the only part made invalid.

    Positive cases already carry it (schemathesis ``auth`` config). Negative cases may have
    mangled credentials; keep those only when nothing else is invalid, so the 401 answer gets
    checked too, and otherwise authenticate so the invalid body or query reaches validation.
    """
    meta = case.meta
    negated = (
        {loc for loc, info in meta.components.items() if not info.mode.is_positive}
        if meta
        else set()
    )
    if not negated - {ParameterLocation.HEADER}:
        return
    for name in ("authorization", "x-api-key"):
        case.headers.pop(name, None)  # case-insensitive
    case.headers["x-api-key"] = caller.key


def _substitute_ids(
    case: Case, ids: int, client: TestClient, caller: Account, other: Account
) -> None:
    """Point the case's path ids at real resources (no-op for GENERATED or id-less routes)."""
    params: dict[str, Any] = case.path_parameters or {}
    if ids == GENERATED or "sessionId" not in params:
        return
    session_id, chat_id = _new_session(client, other if ids == OTHERS_SESSION else caller)
    if ids == OWN_SECOND_CHAT:
        r = client.post(f"/api/sessions/{session_id}/chats", json={}, headers=caller.headers)
        assert r.status_code == 200, r.text
        chat_id = r.json()["chat"]["id"]
    params["sessionId"] = session_id
    if "chatId" in params:
        params["chatId"] = chat_id


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_response_conforms(
    client: TestClient, alice: Account, bob: Account, mode: GenerationMode
) -> None:
    config = schemathesis.Config.from_dict(
        {"auth": {"openapi": {"ApiKeyAuth": {"api_key": alice.key}}}}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not (
            raw.get("parameters") or raw.get("requestBody")
        ):
            continue  # nothing to make invalid (GET /healthz)

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        @given(
            case=operation.as_strategy(generation_mode=mode),
            ids=st.sampled_from([GENERATED, OWN_SESSION, OWN_SECOND_CHAT, OTHERS_SESSION]),
        )
        def run(case: Case, ids: int) -> None:
            _authenticate(case, alice)
            _substitute_ids(case, ids, client, alice, bob)
            case.call_and_validate(checks=CHECKS)

        run()
