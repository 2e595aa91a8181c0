"""What consuming one model stream costs at each layer of the library stack (run on demand).

``bench/capacity.py`` measures the whole server; this measures the floor under it that comes
with the chosen libraries. N streams at once (``--n``), each ``--tokens`` deltas at ``--rate``
a second from the stand-in model (``bench/_agent_support.py``, its own process), are read in
this process by each layer in turn, and the CPU this process spent is divided by the streams:

- ``httpx + json``: the SSE lines read with httpx and each ``data:`` parsed with ``json.loads``
  (the least any Python consumer does; the baseline of the ratios);
- ``openai SDK``: ``AsyncOpenAI.chat.completions.create(stream=True)``, iterated;
- ``pydantic-ai model``: ``OpenAIChatModel.request_stream``, iterated (what ``LiveModel`` runs);
- ``pydantic-ai agent``: ``Agent.run_stream_events`` with no tools (a run's own set-up too).

The server pays at least the last row per turn before it relays or stores anything.

    .venv/bin/python bench/model_stack.py [--n 20] [--tokens 100] [--rate 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from _common import cpu_speed_line, free_port

BENCH = Path(__file__).resolve().parent
PROMPT = [{"role": "user", "content": "go"}]


def start_model(port: int, tokens: int, rate: float, prefix: list[str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(BENCH / "_agent_support.py"), "--port", str(port)]
    cmd += ["--stream-tokens", str(tokens), "--stream-rate", str(rate)]
    proc = subprocess.Popen([*prefix, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the stand-in model did not start")


def layers(base: str) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelRequest, UserPromptPart
    from pydantic_ai.models import ModelRequestParameters
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1000))
    openai = AsyncOpenAI(base_url=base, api_key="bench", http_client=http)
    model = OpenAIChatModel("stream", provider=OpenAIProvider(openai_client=openai))
    agent = Agent(model)
    body = {"model": "stream", "stream": True, "messages": PROMPT}

    async def raw() -> None:
        async with http.stream("POST", f"{base}/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line[6:])

    async def sdk() -> None:
        stream = await openai.chat.completions.create(
            model="stream",
            messages=PROMPT,
            stream=True,  # type: ignore[arg-type]
        )
        async for _ in stream:
            pass

    async def pai_model() -> None:
        request = [ModelRequest(parts=[UserPromptPart("go")])]
        async with model.request_stream(request, None, ModelRequestParameters()) as stream:
            async for _ in stream:
                pass

    async def pai_agent() -> None:
        async with agent.run_stream_events("go") as events:
            async for _ in events:
                pass

    return [
        ("httpx + json", raw),
        ("openai SDK", sdk),
        ("pydantic-ai model", pai_model),
        ("pydantic-ai agent", pai_agent),
    ]


async def measure(n: int, rounds: int, base: str) -> list[tuple[str, float, float]]:
    """(layer, CPU ms per stream, wall s per round) for each layer."""
    out = []
    for name, one in layers(base):
        await asyncio.gather(*[one() for _ in range(n)])  # warm: imports, pools, caches
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*[one() for _ in range(n)])
        cpu_ms = (time.process_time() - cpu) * 1000 / (n * rounds)
        out.append((name, cpu_ms, (time.perf_counter() - wall) / rounds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="streams at once")
    parser.add_argument("--tokens", type=int, default=100, help="deltas per stream")
    parser.add_argument("--rate", type=float, default=50.0, help="deltas per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = parser.parse_args()
    model_prefix: list[str] = []
    if not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})  # where capacity.py puts its servers; the model on CPU 1
        model_prefix = ["taskset", "-c", "1"]
    port = free_port()
    model = start_model(port, args.tokens, args.rate, model_prefix)
    try:
        results = asyncio.run(measure(args.n, args.rounds, f"http://127.0.0.1:{port}/v1"))
    finally:
        model.kill()
    print(cpu_speed_line())
    print(f"{args.n} streams at once, {args.tokens} deltas at {args.rate:g}/s, {args.rounds}×")
    print(f"{'layer':20s} {'CPU ms/stream':>14s} {'× httpx+json':>13s} {'wall s/round':>13s}")
    floor = results[0][1]
    for name, cpu_ms, wall in results:
        print(f"{name:20s} {cpu_ms:14.1f} {cpu_ms / floor:13.2f} {wall:13.2f}")


if __name__ == "__main__":
    main()
