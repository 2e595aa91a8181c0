"""Credentials: API keys (hash only, revocable, last used) and Bearer JWTs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent_sessions.auth import hash_key
from agent_sessions.auth.authenticate import KEY_CACHE_SECONDS
from agent_sessions.ids import new_uuid
from agent_sessions.store import accounts
from agent_sessions.store.models import Account as AccountRow
from agent_sessions.store.models import ApiKey, utcnow
from tests.conftest import Account, Backend, api_app, make_account

SECRET = "test-secret-that-is-long-enough-for-hs256"


def _get_sessions(client: TestClient, **headers: str) -> Any:
    return client.get("/api/sessions", headers=headers)


def test_only_the_hash_of_a_key_is_stored(backend: Backend, alice: Account) -> None:
    with backend.db.read() as s:
        rows = s.scalars(select(ApiKey).where(ApiKey.account_id == alice.id)).all()
    assert len(rows) == 1
    assert rows[0].key_hash == hash_key(alice.key)
    assert alice.key not in (rows[0].key_hash, rows[0].prefix)
    assert alice.key.startswith(rows[0].prefix) and alice.key.startswith("ask_")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "ask_" + "A" * 43},
        {"x-api-key": "not-a-key"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer"},
        {"authorization": "Bearer not.a.jwt"},
    ],
    ids=["none", "unknown-key", "malformed-key", "basic", "empty-bearer", "garbage-bearer"],
)
def test_bad_credentials_are_401_with_www_authenticate(
    client: TestClient, headers: dict[str, str]
) -> None:
    r = client.get("/api/sessions", headers=headers)
    assert r.status_code == 401
    assert r.json()["status"] == "error" and r.json()["error"]
    assert "www-authenticate" in r.headers


def test_key_works_in_both_headers(client: TestClient, alice: Account) -> None:
    assert client.get("/api/sessions", headers={"x-api-key": alice.key}).status_code == 200
    bearer = {"authorization": f"Bearer {alice.key}"}
    assert client.get("/api/sessions", headers=bearer).status_code == 200


def test_two_credentials_for_different_accounts_are_refused(
    client: TestClient, alice: Account, bob: Account
) -> None:
    both = {"x-api-key": alice.key, "authorization": f"Bearer {bob.key}"}
    assert client.get("/api/sessions", headers=both).status_code == 401
    same = {"x-api-key": alice.key, "authorization": f"Bearer {alice.key}"}
    assert client.get("/api/sessions", headers=same).status_code == 200


def test_revoked_key_is_refused_and_other_keys_keep_working(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    from agent_sessions.auth import display_prefix, generate_key

    second = generate_key()
    with backend.db.write() as s:
        accounts.add_key(
            s, account_id=alice.id, prefix=display_prefix(second), key_hash=hash_key(second)
        )
        first_id = s.scalars(select(ApiKey.id).where(ApiKey.key_hash == hash_key(alice.key))).one()
        accounts.revoke_key(s, first_id)
    assert client.get("/api/sessions", headers={"x-api-key": alice.key}).status_code == 401
    assert client.get("/api/sessions", headers={"x-api-key": second}).status_code == 200


def test_a_revoked_key_is_refused_within_a_second_of_the_revocation(
    backend: Backend, client: TestClient, alice: Account
) -> None:
    """Keys are cached (KEY_CACHE_SECONDS): one revoked by another process, as ``keys revoke``
    does, must still be refused by every request that starts a second after it commits."""
    sid = client.post("/api/sessions", json={}, headers=alice.headers).json()["session"]["id"]
    for path in ("/api/sessions", f"/api/sessions/{sid}"):  # now cached, if ever
        assert client.get(path, headers=alice.headers).status_code == 200
    with backend.db.write() as s:
        key_id = s.scalars(select(ApiKey.id).where(ApiKey.key_hash == hash_key(alice.key))).one()
        accounts.revoke_key(s, key_id)
    revoked_at = time.monotonic()
    while True:
        started = time.monotonic()
        status = client.get(f"/api/sessions/{sid}", headers=alice.headers).status_code
        if status == 401:
            break
        assert status == 200
        assert started - revoked_at < KEY_CACHE_SECONDS, "still accepted a second after"
        time.sleep(0.02)
    assert KEY_CACHE_SECONDS <= 1.0
    for path in ("/api/sessions", f"/api/sessions/{sid}"):
        assert client.get(path, headers=alice.headers).status_code == 401


def test_last_used_is_recorded(backend: Backend, client: TestClient, alice: Account) -> None:
    client.get("/api/sessions", headers=alice.headers)
    with backend.db.read() as s:
        used = s.scalars(select(ApiKey.last_used_at).where(ApiKey.account_id == alice.id)).one()
    assert used is not None


# --- JWT ----------------------------------------------------------------------------------


def _claims(subject: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + 300}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def hs_client(backend: Backend) -> Any:
    app = api_app(
        backend, jwt_secret=SECRET, jwt_issuer="https://issuer.test", jwt_audience="sessions"
    )
    with TestClient(app) as c:
        yield c


def _hs(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_valid_hs256_jwt_maps_sub_to_account(hs_client: TestClient, alice: Account) -> None:
    token = _hs(_claims(alice.id, iss="https://issuer.test", aud="sessions"))
    r = hs_client.post("/api/sessions", json={}, headers=_bearer(token))
    assert r.status_code == 200
    assert r.json()["session"]["userId"] == alice.id


def test_jwt_subject_mapping(backend: Backend, hs_client: TestClient) -> None:
    with backend.db.write() as s:
        account = accounts.create_account(s, name="ext", jwt_subject="did:privy:abc")
    token = _hs(_claims("did:privy:abc", iss="https://issuer.test", aud="sessions"))
    r = hs_client.post("/api/sessions", json={}, headers=_bearer(token))
    assert r.status_code == 200 and r.json()["session"]["userId"] == account.id


def test_a_sub_naming_two_accounts_is_refused(backend: Backend, hs_client: TestClient) -> None:
    """Rows from before account creation refused such subjects: one account's ``jwt_subject``
    is another's id. The token is ambiguous, so it acts as neither."""
    with backend.db.write() as s:
        first = accounts.create_account(s, name="first")
        s.add(AccountRow(id=new_uuid(), name="second", jwt_subject=first.id, created_at=utcnow()))
    token = _hs(_claims(first.id, iss="https://issuer.test", aud="sessions"))
    r = hs_client.get("/api/sessions", headers=_bearer(token))
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "no-exp",
        "no-iat",
        "no-sub",
        "wrong-iss",
        "no-iss",
        "wrong-aud",
        "future-iat",
        "too-long-lived",
        "alg-none",
        "wrong-secret",
        "tampered",
        "unknown-sub",
        "future-nbf",
        "string-exp",
        "string-iat",
        "float-string-exp",
        "bool-iat",
    ],
)
def test_bad_jwts_are_refused(hs_client: TestClient, alice: Account, case: str) -> None:
    good = {"iss": "https://issuer.test", "aud": "sessions"}
    now = int(time.time())
    if case == "expired":
        token = _hs(_claims(alice.id, **good, iat=now - 600, exp=now - 300))
    elif case == "no-exp":
        token = _hs(_claims(alice.id, **good, exp=None))
    elif case == "no-iat":
        token = _hs(_claims(alice.id, **good, iat=None))
    elif case == "no-sub":
        token = _hs(_claims(alice.id, **good, sub=None))
    elif case == "wrong-iss":
        token = _hs(_claims(alice.id, iss="evil", aud="sessions"))
    elif case == "no-iss":
        token = _hs(_claims(alice.id, aud="sessions"))
    elif case == "wrong-aud":
        token = _hs(_claims(alice.id, iss="https://issuer.test", aud="other"))
    elif case == "future-iat":
        token = _hs(_claims(alice.id, **good, iat=now + 3600, exp=now + 7200))
    elif case == "too-long-lived":
        token = _hs(_claims(alice.id, **good, exp=now + 30 * 24 * 3600))
    elif case == "alg-none":
        token = jwt.encode(_claims(alice.id, **good), None, algorithm="none")  # type: ignore[arg-type]
    elif case == "wrong-secret":
        token = _hs(_claims(alice.id, **good), key="another-secret-another-secret-xx")
    elif case == "tampered":
        head, body, sig = _hs(_claims(alice.id, **good)).split(".")
        token = f"{head}.{body[:-2]}AA.{sig}"
    elif case == "unknown-sub":
        token = _hs(_claims("nobody", **good))
    elif case == "string-exp":  # PyJWT checks int(exp) but leaves the string in the claims
        token = _hs(_claims(alice.id, **good, exp=str(now + 300)))
    elif case == "string-iat":
        token = _hs(_claims(alice.id, **good, iat=str(now)))
    elif case == "float-string-exp":
        token = _hs(_claims(alice.id, **good, exp=f"{now + 300}.5"))
    elif case == "bool-iat":
        token = _hs(_claims(alice.id, **good, iat=True))
    else:
        token = _hs(_claims(alice.id, **good, nbf=now + 3600))
    r = hs_client.get("/api/sessions", headers=_bearer(token))
    assert r.status_code == 401, r.text
    assert r.json()["status"] == "error"


def test_jwks_file_rs256_and_no_algorithm_confusion(
    backend: Backend, alice: Account, tmp_path: Path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    app = api_app(backend, jwt_jwks_file=jwks)
    with TestClient(app) as c:
        good = jwt.encode(_claims(alice.id), private, algorithm="RS256", headers={"kid": "k1"})
        assert c.get("/api/sessions", headers=_bearer(good)).status_code == 200
        # HS256 signed with the public key's PEM: the classic confusion attack.
        from cryptography.hazmat.primitives import serialization

        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        forged = _forge_hs256(pem, _claims(alice.id))
        assert c.get("/api/sessions", headers=_bearer(forged)).status_code == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        wrong_key = jwt.encode(_claims(alice.id), other, algorithm="RS256", headers={"kid": "k1"})
        assert c.get("/api/sessions", headers=_bearer(wrong_key)).status_code == 401


def _forge_hs256(secret: bytes, claims: dict[str, Any]) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM as an HMAC secret."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_jwt_disabled_means_only_keys(client: TestClient, alice: Account) -> None:
    token = _hs(_claims(alice.id))
    assert client.get("/api/sessions", headers=_bearer(token)).status_code == 401


def test_keys_never_logged(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    account = make_account(backend.db)
    app = api_app(backend)
    with caplog.at_level("DEBUG"), TestClient(app) as c:
        c.get("/api/sessions", headers=account.headers)
        c.get("/api/sessions", headers={"x-api-key": account.key[:-1] + "x"})
    assert account.key not in caplog.text
    assert account.key[:-1] not in caplog.text
