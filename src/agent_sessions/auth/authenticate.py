"""Resolve request credentials (``x-api-key`` and/or ``Authorization: Bearer``) to an account."""

from __future__ import annotations

import hmac

from agent_sessions.auth.keys import hash_key, looks_like_key
from agent_sessions.auth.tokens import TokenVerifier
from agent_sessions.exceptions import Unauthorized
from agent_sessions.settings import Settings
from agent_sessions.store import accounts
from agent_sessions.store.database import Database
from agent_sessions.store.models import utcnow

_INVALID = "Invalid API key or token"


class Authenticator:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._tokens = TokenVerifier(settings)

    def _account_for_key(self, key: str) -> str:
        if not looks_like_key(key):
            raise Unauthorized(_INVALID)
        digest = hash_key(key)
        with self._db.read() as s:
            found = accounts.active_key_by_hash(s, digest)
        # The row was found by its hash; compare again in constant time so that the decision
        # never depends on a data-dependent string comparison.
        if found is None or not hmac.compare_digest(found.key_hash, digest):
            raise Unauthorized(_INVALID)
        now = utcnow()
        if found.last_used_at is None or now - found.last_used_at > accounts.LAST_USED_RESOLUTION:
            with self._db.write() as s:
                accounts.touch_key(s, found.id, now)
        return found.account_id

    def _account_for_bearer(self, token: str) -> str:
        if looks_like_key(token):
            return self._account_for_key(token)
        subject = self._tokens.subject(token)
        with self._db.read() as s:
            account_id = accounts.account_for_subject(s, subject)
        if account_id is None:
            raise Unauthorized("Invalid token: unknown subject")
        return account_id

    def account_id(self, *, api_key: str | None, authorization: str | None) -> str:
        """The calling account. Two credentials naming different accounts are refused."""
        found: list[str] = []
        if api_key is not None:
            found.append(self._account_for_key(api_key.strip()))
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("Authorization header must be 'Bearer <key-or-token>'")
            found.append(self._account_for_bearer(value.strip()))
        if not found:
            raise Unauthorized("Missing credentials: send x-api-key or Authorization: Bearer")
        if len(set(found)) > 1:
            raise Unauthorized("Credentials name different accounts")
        return found[0]
