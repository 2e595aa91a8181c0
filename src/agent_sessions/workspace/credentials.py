"""Forge tokens: one per account, encrypted at rest, never handed back out.

A token is stored as a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a
key derived from ``AGENT_SESSIONS_SECRET_KEY``; without that setting a random key is created
once in ``DATA_DIR/secret.key`` (0600). The plaintext exists only in the host process, on its
way to git's environment or the forge client: it is in no response, no ``sandboxState``, no log
line, no stream and no model request. An account without a token of its own uses the
operator's (``AGENT_SESSIONS_FORGE_TOKEN``), if any.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.orm import Session

from agent_sessions.datadir import private
from agent_sessions.settings import Settings
from agent_sessions.store.models import ForgeCredential, utcnow

__all__ = ["TokenStatus", "Vault", "delete_token", "set_token", "token_status"]

KEY_FILE = "secret.key"


class Vault:
    """Encrypts and decrypts forge tokens with the service's key."""

    def __init__(self, settings: Settings) -> None:
        self._fernet = Fernet(_fernet_key(settings))
        self._operator = settings.forge_token

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The token, or None when it was sealed under another key (the key was lost)."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None

    def token_for(self, db: Session, account_id: str) -> str | None:
        """The account's own token, else the operator's, else None."""
        row = db.get(ForgeCredential, account_id)
        if row is not None and (token := self.open(row.token_encrypted)) is not None:
            return token
        return self._operator.get_secret_value() if self._operator is not None else None


def _fernet_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value().encode()
    else:
        secret = _key_file(settings)
    # Any string is accepted as a key: Fernet needs 32 url-safe-base64 bytes, so derive them.
    return base64.urlsafe_b64encode(hashlib.sha256(b"agent-sessions/forge\0" + secret).digest())


def _key_file(settings: Settings) -> bytes:
    path = settings.data_dir / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb", opener=private) as f:
            f.write(secrets.token_urlsafe(32).encode())
    except FileExistsError:
        pass
    with open(path, "rb") as f:
        key = f.read().strip()
    if not key:  # a crash between create and write: start over
        os.unlink(path)
        return _key_file(settings)
    return key


@dataclass(frozen=True)
class TokenStatus:
    """What the API may say about an account's token: whether there is one, never what."""

    configured: bool
    source: str | None
    """``account``, ``operator`` or None."""
    login: str | None
    updated_at: datetime | None


def set_token(db: Session, vault: Vault, account_id: str, token: str, login: str | None) -> None:
    row = db.get(ForgeCredential, account_id)
    now = utcnow()
    if row is None:
        db.add(
            ForgeCredential(
                account_id=account_id,
                token_encrypted=vault.seal(token),
                login=login,
                created_at=now,
                updated_at=now,
            )
        )
    else:
        row.token_encrypted, row.login, row.updated_at = vault.seal(token), login, now


def delete_token(db: Session, account_id: str) -> bool:
    row = db.get(ForgeCredential, account_id)
    if row is None:
        return False
    db.delete(row)
    return True


def token_status(db: Session, vault: Vault, account_id: str, operator: bool) -> TokenStatus:
    row = db.get(ForgeCredential, account_id)
    if row is not None and vault.open(row.token_encrypted) is not None:
        return TokenStatus(True, "account", row.login, row.updated_at)
    if operator:
        return TokenStatus(True, "operator", None, None)
    return TokenStatus(False, None, None, None)
