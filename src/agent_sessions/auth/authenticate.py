"""Resolve request credentials (``x-api-key`` and/or ``Authorization: Bearer``) to an account."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy.orm import Session

from agent_sessions.auth.keys import hash_key, looks_like_key
from agent_sessions.auth.tokens import TokenVerifier
from agent_sessions.exceptions import Unauthorized
from agent_sessions.settings import Settings
from agent_sessions.store import accounts
from agent_sessions.store.database import Database
from agent_sessions.store.models import utcnow
from agent_sessions.store.reads import Reader

_INVALID = "Invalid API key or token"


@dataclass(frozen=True)
class _Credentials:
    """What the request presented, parsed but not yet checked against the database."""

    key_hashes: tuple[str, ...]
    subjects: tuple[str, ...]


class Authenticator:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._tokens = TokenVerifier(settings)
        self._remote_keys = settings.jwt_jwks_url is not None

    def _parse_key(self, key: str) -> str:
        if not looks_like_key(key):
            raise Unauthorized(_INVALID)
        return hash_key(key)

    def _parse(self, api_key: str | None, authorization: str | None) -> tuple[list[str], list[str]]:
        hashes: list[str] = []
        tokens: list[str] = []
        if api_key is not None:
            hashes.append(self._parse_key(api_key.strip()))
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(" ")
            value = value.strip()
            if scheme.lower() != "bearer" or not value:
                raise Unauthorized("Authorization header must be 'Bearer <key-or-token>'")
            if looks_like_key(value):
                hashes.append(hash_key(value))
            else:
                tokens.append(value)
        if not hashes and not tokens:
            raise Unauthorized("Missing credentials: send x-api-key or Authorization: Bearer")
        return hashes, tokens

    def _lookup(self, db: Reader, creds: _Credentials) -> tuple[str, list[str]]:
        """The one account the credentials name, and the keys whose ``last_used_at`` is stale."""
        found: set[str] = set()
        stale: list[str] = []
        now = utcnow()
        for digest in creds.key_hashes:
            key = accounts.active_key_by_hash(db, digest)
            # Found by its hash; compare again in constant time so that the decision never
            # rests on a data-dependent comparison.
            if key is None or not hmac.compare_digest(key.key_hash, digest):
                raise Unauthorized(_INVALID)
            found.add(key.account_id)
            if key.last_used_at is None or now - key.last_used_at > accounts.LAST_USED_RESOLUTION:
                stale.append(key.id)
        for subject in creds.subjects:
            account_id = accounts.account_for_subject(db, subject)
            if account_id is None:
                raise Unauthorized("Invalid token: unknown subject")
            found.add(account_id)
        if len(found) > 1:
            raise Unauthorized("Credentials name different accounts")
        return found.pop(), stale

    async def account_id(self, *, api_key: str | None, authorization: str | None) -> str:
        """The calling account. Two credentials naming different accounts are refused."""
        hashes, tokens = self._parse(api_key, authorization)
        if tokens and self._remote_keys:  # a JWKS fetch may block: keep it off the event loop
            subjects = [await anyio.to_thread.run_sync(self._tokens.subject, t) for t in tokens]
        else:
            subjects = [self._tokens.subject(t) for t in tokens]
        creds = _Credentials(tuple(hashes), tuple(subjects))
        account, stale = await self._db.query_call(lambda db: self._lookup(db, creds))
        if stale:
            now = utcnow()

            def touch(db: Session) -> None:
                for key_id in stale:
                    accounts.touch_key(db, key_id, now)

            await self._db.write_call(touch)
        return account
