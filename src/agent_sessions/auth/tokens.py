"""Bearer JWT verification (PyJWT), with the checklist's §3 pitfalls closed.

The algorithm is pinned (no ``alg: none``, no HS/RS confusion), ``exp``/``iat``/``sub`` are
required (PyJWT does not require ``exp`` by default), ``iss`` and ``aud`` are checked when
configured (PyJWT ignores ``iss`` unless told), and very long-lived tokens are refused.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt

from agent_sessions.exceptions import Unauthorized
from agent_sessions.settings import Settings


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class TokenVerifier:
    """Turns a Bearer JWT into its ``sub``; raises :class:`Unauthorized` for anything else."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._jwks_client = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300)
            if settings.jwt_jwks_url
            else None
        )
        self._jwks_file = (
            jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())
            if settings.jwt_jwks_file
            else None
        )
        default_alg = "HS256" if self._secret else "RS256"
        self.algorithm = settings.jwt_algorithm or default_alg

    @property
    def enabled(self) -> bool:
        return bool(self._secret or self._jwks_client or self._jwks_file)

    def _key(self, token: str) -> Any:
        if self._secret is not None:
            return self._secret
        if self._jwks_client is not None:
            return self._jwks_client.get_signing_key_from_jwt(token).key
        assert self._jwks_file is not None
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._jwks_file.keys
        if kid is None and len(keys) == 1:
            return keys[0].key
        for candidate in keys:
            if candidate.key_id == kid:
                return candidate.key
        raise Unauthorized("Invalid token: unknown signing key")

    def subject(self, token: str) -> str:
        if not self.enabled:
            raise Unauthorized("Invalid API key or token")
        s = self._settings
        required = ["exp", "iat", "sub"]
        if s.jwt_issuer:
            required.append("iss")
        if s.jwt_audience:
            required.append("aud")
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=[self.algorithm],
                issuer=s.jwt_issuer,
                audience=s.jwt_audience,
                leeway=s.jwt_leeway_seconds,
                options={"require": required, "verify_aud": bool(s.jwt_audience)},
            )
        except (jwt.PyJWTError, ValueError, json.JSONDecodeError) as err:
            raise Unauthorized(f"Invalid token: {err}") from None
        iat, exp, sub = claims["iat"], claims["exp"], claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("Invalid token: sub must be a non-empty string")
        # PyJWT validates int(exp) and int(iat) but hands the claims back as sent: "1700000000"
        # passes its check and is still a string here (RFC 7519 says NumericDate, a number).
        if not (_numeric(iat) and _numeric(exp)):
            raise Unauthorized("Invalid token: exp and iat must be numbers")
        if iat > time.time() + s.jwt_leeway_seconds:
            raise Unauthorized("Invalid token: issued in the future")
        if exp - iat > s.jwt_max_lifetime_seconds:
            raise Unauthorized("Invalid token: lifetime exceeds the configured maximum")
        return sub
