"""Keep the start-up heap out of the garbage collector's full passes.

A serving process holds ~240,000 long-lived objects after start-up (FastAPI, SQLAlchemy,
pydantic, DBOS, the models). CPython's oldest-generation collection walks all of them: 100-130 ms
with the event loop stopped, every few thousand requests, and so the whole p99 of the API
(docs/adr/0008). None of them ever becomes garbage, so once the process is up they are moved to
the permanent generation (``gc.freeze``); cycles made afterwards are collected as before.

Only long-running processes (``serve``, ``worker``) do this: a test process that builds many
apps would keep each one's objects for good.
"""

from __future__ import annotations

import gc

_enabled = False


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, then freeze the rest; returns the frozen count.

    Also enables :func:`freeze_late_imports` for this process.
    """
    global _enabled
    _enabled = True
    _freeze()
    return gc.get_freeze_count()


def freeze_late_imports() -> None:
    """Freeze again after modules imported in the background (the model SDKs, ~60,000 more
    objects: full passes during turns were back at 45-135 ms without this). Only in a process
    that froze its start-up heap."""
    if _enabled:
        _freeze()


def _freeze() -> None:
    gc.collect()
    gc.freeze()
