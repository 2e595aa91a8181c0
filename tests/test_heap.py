"""The serving app freezes its start-up heap out of full GC passes (``heap``, ADR 8)."""

from __future__ import annotations

import gc
import weakref

from fastapi.testclient import TestClient

from agent_sessions.api import create_app
from agent_sessions.heap import freeze_startup_heap
from tests.conftest import Backend, InertLifecycle


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_app_freezes_heap_only_when_asked(backend: Backend) -> None:
    s = backend.settings()
    gc.unfreeze()
    try:
        lifecycle = InertLifecycle(s, backend.db)
        with TestClient(create_app(s, db=backend.db, lifecycle=lifecycle)):
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(s, db=backend.db, lifecycle=lifecycle, freeze_heap=True)):
            assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def test_cycles_made_after_the_freeze_are_still_collected() -> None:
    gc.unfreeze()
    try:
        survivor = _Node()
        assert freeze_startup_heap() > 0
        garbage = _Node()
        ref = weakref.ref(garbage)
        del garbage
        gc.collect()
        assert ref() is None
        assert survivor.me is survivor
    finally:
        gc.unfreeze()
