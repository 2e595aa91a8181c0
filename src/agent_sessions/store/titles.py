"""Readable default titles for sessions created without one ("Quiet Harbor Lisbon")."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "Amber", "Bold", "Brisk", "Calm", "Clever", "Crimson", "Daring", "Eager", "Gentle", "Golden",
    "Hidden", "Jolly", "Keen", "Lively", "Lucky", "Mellow", "Misty", "Nimble", "Quiet", "Rapid",
    "Silver", "Steady", "Sunny", "Swift", "Tidy", "Vivid", "Wandering", "Wise",
)  # fmt: skip
_CITIES = (
    "Accra", "Amsterdam", "Athens", "Bogota", "Cairo", "Cusco", "Dakar", "Dublin", "Hanoi",
    "Havana", "Helsinki", "Istanbul", "Kyoto", "Lagos", "Lima", "Lisbon", "Marrakesh", "Montreal",
    "Nairobi", "Oslo", "Porto", "Prague", "Quito", "Reykjavik", "Santiago", "Seoul", "Tallinn",
    "Tbilisi", "Valparaiso", "Vienna", "Zanzibar",
)  # fmt: skip


def generate_title() -> str:
    return f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_CITIES)}"


CHAT_TITLE_CHARS = 80


def title_from_prompt(prompt: str) -> str:
    """A chat's title from its first message: the first 80 characters, one line."""
    line = " ".join(prompt.split())
    return line if len(line) <= CHAT_TITLE_CHARS else line[:CHAT_TITLE_CHARS].rstrip() + "…"
