"""Crash points for the recovery tests (fault points driven by an environment variable).

A test starts a process with ``AGENT_SESSIONS_FAULT_POINT`` set to one of the names passed to
:func:`fault_point`; the process then dies by SIGKILL exactly there, with no ``finally`` blocks
run, like a power cut or the OOM killer. Unset (always, in production) it costs one lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "AGENT_SESSIONS_FAULT_POINT"


def fault_point(name: str) -> None:
    """Die here, now, if the test harness asked for this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
