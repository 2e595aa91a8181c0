"""API keys: ``ask_`` + 32 random bytes (base64url). Only a SHA-256 of the key is stored.

A fast hash is enough because the key has 256 bits of entropy; the readable
prefix lets people and secret scanners recognise a key without revealing it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

KEY_PREFIX = "ask_"
DISPLAY_CHARS = 12


def generate_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) == len(KEY_PREFIX) + 43
