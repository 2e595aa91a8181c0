"""Two checkouts' agent step cost, measured in one run (run on demand; not part of the tests).

This VM's speed drifts by tens of percent within minutes, more than most changes to a step's
cost, so two runs of ``bench/agent.py`` one after the other cannot tell them apart. Here two
``agent-sessions serve`` processes run side by side, both pinned to CPU 0: the baseline with
``--baseline-src`` first on its ``PYTHONPATH`` (e.g. a ``git worktree`` of an older commit),
the other with this checkout. The client alternates turns of N ``todo_write`` tool steps between
them (A, B, B, A, ...), so both see the same machine. Per server: CPU time per step (all threads,
``/proc``) and the step interval; then B/A as the median of the ratios of adjacent turns.
Same stand-in model (zero latency) and database set-up as ``bench/agent.py``.

    git worktree add /tmp/base <rev>
    .venv/bin/python bench/agent_ab.py --baseline-src /tmp/base/src [--turns 20] [--steps 20]
        [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from _common import cpu_speed_line, kill_leftovers
from agent import Client, Server, model_server, server, server_place

UID_BASES = {"A": 3_200_000, "B": 3_250_000}


def process_cpu(pid: int) -> float:
    """CPU seconds the process's threads have run (``schedstat``: nanoseconds, where ``stat``
    counts 10 ms ticks, too coarse for one turn's half a second)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total / 1e9


async def measure(
    servers: dict[str, Server], steps: int, turns: int
) -> dict[str, dict[str, list[float]]]:
    """Per server: CPU seconds per step and step intervals, turn by turn (A, B, B, A, ...)."""
    out: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "interval": []} for k in servers}
    async with httpx.AsyncClient(timeout=300) as http:
        clients = {k: Client(srv, http) for k, srv in servers.items()}
        sessions = {k: await c.new_session("ab") for k, c in clients.items()}
        for k, c in clients.items():
            await c.wait_active(sessions[k])
            for _ in range(3):  # warm-up
                await c.turn(sessions[k], f"tools-{steps}", steps + 1)
        for i in range(turns):
            order = ["A", "B"] if i % 2 == 0 else ["B", "A"]
            for k in order:
                pid = servers[k].proc.pid
                cpu0 = process_cpu(pid)
                turn = await clients[k].turn(sessions[k], f"tools-{steps}", steps + 1)
                out[k]["cpu"].append((process_cpu(pid) - cpu0) / (steps + 1))
                out[k]["interval"].append(statistics.median(turn.step_intervals()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="A/B agent step cost (see module doc).")
    parser.add_argument("--baseline-src", required=True, help="the baseline's src directory")
    parser.add_argument("--steps", type=int, default=20, help="tool steps per turn")
    parser.add_argument("--turns", type=int, default=20, help="measured turns per server")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    baseline = Path(args.baseline_src).resolve()
    if not (baseline / "agent_sessions").is_dir():
        parser.error(f"{baseline} holds no agent_sessions package")
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu = ["taskset", "-c", "0"] if pin else []
    if pin:
        os.sched_setaffinity(0, {1})
    root = Path(tempfile.mkdtemp(prefix="agent-sessions-ab-bench-", dir="/tmp"))
    root.chmod(0o711)
    started = time.perf_counter()
    try:
        with (
            model_server(root, {args.steps}, ["taskset", "-c", "1"] if pin else []) as (
                model_url,
                _,
            ),
            contextlib.ExitStack() as stack,
        ):
            servers: dict[str, Server] = {}
            for key, env in (("A", {"PYTHONPATH": str(baseline)}), ("B", {})):
                place = server_place(stack, root, key, args.db)
                if place is None:
                    return
                data_dir, url = place
                servers[key] = stack.enter_context(
                    server(data_dir, url, model_url, UID_BASES[key], server_cpu, None, env)
                )
            results = asyncio.run(measure(servers, args.steps, args.turns))
    finally:
        kill_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{args.db}; A = {baseline}, B = this checkout; {args.turns} turns each of "
        f"{args.steps} tool steps + 1 text step, alternated; {time.perf_counter() - started:.0f} s"
    )
    print(cpu_speed_line())
    for figure, key, unit in (
        ("server CPU per step", "cpu", 1000),
        ("step interval p50", "interval", 1000),
    ):
        a, b = results["A"][key], results["B"][key]
        ratios = sorted(y / x for x, y in zip(a, b, strict=True))
        print(
            f"{figure:<22} A median {statistics.median(a) * unit:6.1f} ms   "
            f"B median {statistics.median(b) * unit:6.1f} ms   B/A (adjacent turns) median "
            f"{statistics.median(ratios):.3f}, middle half {ratios[len(ratios) // 4]:.3f}-"
            f"{ratios[(3 * len(ratios)) // 4]:.3f}"
        )


if __name__ == "__main__":
    main()
