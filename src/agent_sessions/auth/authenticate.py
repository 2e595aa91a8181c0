"""Resolve request credentials (``x-api-key`` and/or ``Authorization: Bearer``) to an account.

A key found in the database is trusted for :data:`KEY_CACHE_SECONDS` without asking again
(issue 16: the lookup was a query on every request, the hot ``GET``s included). The time is
taken before the query, so a key revoked or deleted by any process (``agent-sessions keys
revoke``) is refused by every server at most that long after the change commits. Only keys
that were found are kept: an unknown key is looked up every time and fills nothing.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

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
KEY_CACHE_SECONDS = 1.0
"""How stale a key's state may be: the bound on how late a revocation takes effect."""
_KEY_CACHE_PRUNE_AT = 10_000


class KeyCache:
    """Keys found by their hash, each with the monotonic time at which its read began."""

    def __init__(
        self, ttl: float = KEY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._found: dict[str, tuple[float, accounts.ActiveKey]] = {}

    def get(self, digest: str) -> accounts.ActiveKey | None:
        entry = self._found.get(digest)
        if entry is None:
            return None
        if self.clock() - entry[0] >= self.ttl:
            del self._found[digest]
            return None
        return entry[1]

    def put(self, digest: str, key: accounts.ActiveKey, read_at: float) -> None:
        if len(self._found) >= _KEY_CACHE_PRUNE_AT:
            now = self.clock()
            self._found = {d: e for d, e in self._found.items() if now - e[0] < self.ttl}
        self._found[digest] = (read_at, key)

    def touched(self, digest: str, at: datetime) -> None:
        """The key's ``last_used_at`` is being set: requests until it expires need not."""
        entry = self._found.get(digest)
        if entry is not None:
            self._found[digest] = (entry[0], replace(entry[1], last_used_at=at))


class Authenticator:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._tokens = TokenVerifier(settings)
        self._remote_keys = settings.jwt_jwks_url is not None
        self.keys = KeyCache()

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

    def _lookup(
        self, db: Reader, digests: list[str], subjects: tuple[str, ...]
    ) -> tuple[dict[str, accounts.ActiveKey], set[str]]:
        """The keys named by ``digests`` and the accounts named by ``subjects``, from the
        database; :class:`Unauthorized` if any of them names nothing."""
        keys: dict[str, accounts.ActiveKey] = {}
        for digest in digests:
            key = accounts.active_key_by_hash(db, digest)
            # Found by its hash; compare again in constant time so that the decision never
            # rests on a data-dependent comparison.
            if key is None or not hmac.compare_digest(key.key_hash, digest):
                raise Unauthorized(_INVALID)
            keys[digest] = key
        found: set[str] = set()
        for subject in subjects:
            account_id = accounts.account_for_subject(db, subject)
            if account_id is None:
                raise Unauthorized("Invalid token: unknown subject")
            found.add(account_id)
        return keys, found

    async def account_id(self, *, api_key: str | None, authorization: str | None) -> str:
        """The calling account. Two credentials naming different accounts are refused."""
        hashes, tokens = self._parse(api_key, authorization)
        if tokens and self._remote_keys:  # a JWKS fetch may block: keep it off the event loop
            subjects = [await anyio.to_thread.run_sync(self._tokens.subject, t) for t in tokens]
        else:
            subjects = [self._tokens.subject(t) for t in tokens]
        keys: dict[str, accounts.ActiveKey] = {}
        missing: list[str] = []
        for digest in hashes:
            key = self.keys.get(digest)
            if key is None:
                missing.append(digest)
            else:
                keys[digest] = key
        found: set[str] = set()
        if missing or subjects:
            read_at = self.keys.clock()
            subjects_ = tuple(subjects)
            read, found = await self._db.query_call(lambda db: self._lookup(db, missing, subjects_))
            for digest, key in read.items():
                self.keys.put(digest, key, read_at)
            keys.update(read)
        found.update(key.account_id for key in keys.values())
        if len(found) > 1:
            raise Unauthorized("Credentials name different accounts")
        now = utcnow()
        stale = [
            (digest, key.id)
            for digest, key in keys.items()
            if key.last_used_at is None or now - key.last_used_at > accounts.LAST_USED_RESOLUTION
        ]
        if stale:
            for digest, _ in stale:
                self.keys.touched(digest, now)

            def touch(db: Session) -> None:
                for _, key_id in stale:
                    accounts.touch_key(db, key_id, now)

            await self._db.write_call(touch)
        return found.pop()
