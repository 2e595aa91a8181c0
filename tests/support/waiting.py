"""Waiting for a condition instead of sleeping for a guess: under load a guess runs out first.

Both fail the test with ``what`` when the condition is still false after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest


def until(what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


async def until_async(
    what: str,
    check: Callable[[], object],
    timeout: float = 30.0,  # noqa: ASYNC109
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
