"""Helpers the benchmarks share (they run as `python bench/<name>.py`: this is `_common`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

NO_ACCOUNT_LIMITS = {
    "AGENT_SESSIONS_ACCOUNT_MAX_LIVE_SANDBOXES": "0",
    "AGENT_SESSIONS_ACCOUNT_MAX_TURNS": "0",
    "AGENT_SESSIONS_ACCOUNT_WRITES_PER_MINUTE": "0",
}
"""A bench loads one account far beyond one team's use: its servers run without the limits."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_account(cli: str, env: Mapping[str, str]) -> dict[str, str]:
    """A new account through the CLI; returns the auth header for its key."""
    created = subprocess.run(
        [cli, "accounts", "create", "--name", "bench", "--json"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )
    return {"x-api-key": json.loads(created.stdout)["apiKey"]}


def kill_leftovers(root: Path) -> int:
    """Kill processes whose command line names our temp dir (sandboxes and their helpers)."""
    tag = os.fsencode(str(root))
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if tag not in f.read():
                    continue
            os.kill(int(entry), signal.SIGKILL)
            found += 1
        except OSError:
            continue
    return found


def cpu_speed_line() -> str:
    """How fast this machine's CPU is right now, to compare absolute figures across runs: the
    same VM measured 2.5x slower one day than another (ratios within a run stay comparable)."""
    import timeit

    best = min(timeit.repeat("sum(range(10**6))", number=5, repeat=5)) / 5
    return f"cpu calibration: sum(range(10**6)) best {best * 1000:.1f} ms (lower is faster)"
