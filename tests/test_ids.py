"""Session and run ids (``ids.nanoid``): the right length and alphabet, uniform, never repeated."""

from __future__ import annotations

import collections

from agent_sessions.ids import _NANOID_ALPHABET, nanoid


def test_nanoids_have_the_length_and_alphabet_asked_and_differ() -> None:
    assert len(set(_NANOID_ALPHABET)) == len(_NANOID_ALPHABET) == 64
    ids = [nanoid() for _ in range(2000)]
    assert all(len(i) == 21 and set(i) <= set(_NANOID_ALPHABET) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len(nanoid(7)) == 7 and nanoid(0) == ""


def test_every_symbol_is_about_equally_likely() -> None:
    counts = collections.Counter("".join(nanoid() for _ in range(3000)))  # 63,000 symbols
    assert set(counts) == set(_NANOID_ALPHABET)
    expected = 63_000 / 64  # ~984 each; a skewed mapping (e.g. ``% 62``) doubles some
    assert all(0.8 * expected < n < 1.2 * expected for n in counts.values()), counts
