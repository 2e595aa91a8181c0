"""Identifier generation: nanoid-style session ids, uuid4 for accounts and keys."""

from __future__ import annotations

import secrets
import uuid

_NANOID_ALPHABET = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"


def nanoid(size: int = 21) -> str:
    """A URL-safe random id with ~126 bits of entropy (nanoid's default): ids can't be guessed."""
    return "".join(secrets.choice(_NANOID_ALPHABET) for _ in range(size))


def new_uuid() -> str:
    return str(uuid.uuid4())
