"""Fallback load generator for ``bench/api.py`` when ``wrk`` is not installed.

Closed loop like wrk: ``--connections`` asyncio workers, each sending its next request as soon as
the previous one answered, for ``--duration`` seconds. Prints one JSON line in the same shape
as the wrk Lua ``done`` hook. Python is far slower than wrk at generating load, so run it in its
own process (and on its own core) and treat its req/s as a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx


async def _run(
    url: str, method: str, headers: dict[str, str], body: str | None, duration: float, conns: int
) -> dict[str, float | int]:
    latencies: list[float] = []
    errors = {"status": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, timeout=2.0) as client:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    r = await client.request(method, url, headers=headers, content=body)
                except httpx.TimeoutException:
                    errors["timeout"] += 1
                    continue
                except httpx.TransportError:
                    errors["connect"] += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                if r.status_code >= 400:
                    errors["status"] += 1

        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6)

    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        **errors,
        "p50": pct(50) if latencies else 0,
        "p99": pct(99) if latencies else 0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--headers", default="{}", help="JSON object")
    parser.add_argument("--body")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    a = parser.parse_args()
    result = asyncio.run(
        _run(a.url, a.method, json.loads(a.headers), a.body, a.duration, a.connections)
    )
    print(json.dumps(result))
