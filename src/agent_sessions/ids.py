"""Identifier generation: nanoid-style session ids, uuid4 for accounts and keys."""

from __future__ import annotations

import secrets
import uuid

_NANOID_ALPHABET = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"
_BYTE_TO_SYMBOL = bytes(ord(_NANOID_ALPHABET[b & 63]) for b in range(256))
"""Byte ``b`` → symbol ``b & 63``: the alphabet has exactly 64 symbols, so each is the image of
four byte values and a uniform byte picks each symbol with the same probability."""


def nanoid(size: int = 21) -> str:
    """A URL-safe random id with ~126 bits of entropy (nanoid's default): ids can't be guessed.

    One ``token_bytes`` call rather than a ``secrets.choice`` per character (which was 2.5 %
    of the server's CPU with 50 turns streaming), mapped by one ``bytes.translate``."""
    return secrets.token_bytes(size).translate(_BYTE_TO_SYMBOL).decode("ascii")


def new_uuid() -> str:
    return str(uuid.uuid4())
