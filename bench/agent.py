"""Agent-turn benchmark (run on demand; not part of the tests).

Starts the real ``agent-sessions serve`` (a fresh temporary ``DATA_DIR``, local bubblewrap
sandboxes, an account from ``agent-sessions accounts create --json``) on SQLite and, when it is
reachable, on a PostgreSQL database of its own (created and dropped, as the tests do), with the
scripted stand-in model (``tests/support/model_server.py``, zero latency) in a process of its
own (``bench/_agent_support.py``). Measured from the client (httpx), per database:

1. per-step overhead: turns of N ``todo_write`` tool steps then a text (``todo_write`` does not
   touch the sandbox, so a step costs: model request + stream writes + persist + checkpoint).
   The step interval is the time between consecutive ``start-step`` chunks as they arrive over
   SSE; also the whole turn's wall time (``POST /api/chat`` until ``[DONE]``) / steps. The
   baseline is the stand-in model alone: the very request bodies the agent sent, replayed with
   the ``openai`` SDK (streaming, a warmed client), each turn's right after that turn (this
   VM's speed drifts by tens of percent within minutes). Overhead p50 = our p50 − model p50 (its
   p99 = our p99 − model p50). Target p50 < 15 ms (SQLite). Also the server process's CPU
   time (all threads, ``/proc``) per step: steadier than latencies on a shared VM;
2. ``POST /api/chat`` → first chunk, and → first ``text-delta`` (a text-only script), over
   sequential turns. Target p50 < 100 ms;
3. throughput: C chats (one session each; sandboxes made active beforehand, not timed) each
   running one turn of M tool steps at the same time → model steps/s, turns/s, wall time,
   server CPU per step.

Every turn gets a new chat: the stand-in picks its answer by the number of assistant messages.
With two CPUs or more, the server is pinned to CPU 0 and this process and the model to CPU 1.

    .venv/bin/python bench/agent.py [--steps 20] [--turns 10] [--first-turns 30]
        [--concurrency 20] [--concurrent-steps 20] [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from openai import AsyncOpenAI

from _common import NO_ACCOUNT_LIMITS, cpu_speed_line, create_account, free_port, kill_leftovers

BENCH = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).with_name("agent-sessions"))
PG_ADMIN_URL = os.environ.get(
    "AGENT_SESSIONS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STEP_OVERHEAD_P50_TARGET_MS = 15.0
FIRST_CHUNK_P50_TARGET_MS = 100.0
UID_BASES = {"sqlite": 3_100_000, "postgres": 3_150_000}
"""Sandbox uids of their own (``stop()`` kills every process of a sandbox's uid: a test run or
another bench with the same range would kill ours)."""
UID_COUNT = 1000


# --- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def p50_p99(seconds: list[float]) -> tuple[float, float]:
    return percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000


@dataclass
class Row:
    figure: str
    n: int | str
    value: str
    target: str = ""
    met: bool | None = None

    def line(self) -> str:
        verdict = "" if self.met is None else ("MET" if self.met else "MISSED")
        return f"{self.figure:<34} {self.n!s:>5}  {self.value:<40} {self.target:<14} {verdict}"


def latency_row(name: str, seconds: list[float], target_ms: float | None = None) -> Row:
    p50, p99 = p50_p99(seconds)
    value = f"p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"
    if target_ms is None:
        return Row(name, len(seconds), value)
    return Row(name, len(seconds), value, f"p50 < {target_ms:g} ms", p50 < target_ms)


def pin_cpus(wanted: bool) -> tuple[list[str], list[str]]:
    """With two CPUs or more: the servers on CPU 0, this process (and the model) on CPU 1;
    returns the ``taskset`` prefixes of the server's and the client's commands."""
    if not (wanted and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2):
        return [], []
    os.sched_setaffinity(0, {1})
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def chat_body(session_id: str, model: str) -> dict[str, Any]:
    """``POST /api/chat`` for a new chat of ``session_id`` saying "go", as ``useChat`` sends it."""
    return {
        "id": f"bench-{uuid.uuid4().hex[:12]}",
        "sessionId": session_id,
        "messages": [
            {
                "id": f"u-{uuid.uuid4().hex[:12]}",
                "role": "user",
                "parts": [{"type": "text", "text": "go"}],
            }
        ],
        "trigger": "submit-message",
        "messageId": None,
        "model": model,
    }


# --- processes --------------------------------------------------------------------------------


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up; log:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop within 30 s of SIGTERM; killing it")
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def model_server(
    root: Path, tool_steps: set[int], cpu: list[str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The stand-in model in its own process; yields its base URL (``…/v1``)."""
    port = free_port()
    log = root / "model.log"
    cmd = [*cpu, sys.executable, str(BENCH / "_agent_support.py"), "--port", str(port)]
    cmd += ["--tool-steps", ",".join(str(n) for n in sorted(tool_steps))]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", log, 30)
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        _stop(proc, "model server")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    headers: dict[str, str]
    log: Path


@contextlib.contextmanager
def server(
    data_dir: Path,
    database_url: str | None,
    model_url: str,
    uid_base: int,
    cpu: list[str],
    worker_concurrency: int | None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SESSIONS_")}
    env.update(NO_ACCOUNT_LIMITS)
    env.update(extra_env or {})
    env["AGENT_SESSIONS_DATA_DIR"] = str(data_dir)
    env["AGENT_SESSIONS_SANDBOX_UID_BASE"] = str(uid_base)
    env["AGENT_SESSIONS_SANDBOX_UID_COUNT"] = str(UID_COUNT)
    env["OPENAI_API_KEY"] = "x"
    env["OPENAI_BASE_URL"] = model_url
    if database_url:
        env["AGENT_SESSIONS_DATABASE_URL"] = database_url
    if worker_concurrency:
        env["AGENT_SESSIONS_AGENT_WORKER_CONCURRENCY"] = str(worker_concurrency)
    headers = create_account(CLI, env)
    port = free_port()
    log = data_dir / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cpu, CLI, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, f"{base}/healthz", log, 60)
        yield Server(proc, base, headers, log)
    finally:
        _stop(proc, "server")


def server_place(
    stack: contextlib.ExitStack, root: Path, name: str, db: str
) -> tuple[Path, str | None] | None:
    """A server's data directory under ``root`` and its database URL (None: SQLite in that
    directory); None when PostgreSQL is asked for and unreachable."""
    url: str | None = None
    if db == "postgres":
        url = stack.enter_context(postgres_database())
        if url is None:
            return None
    data_dir = root / name
    data_dir.mkdir()
    data_dir.chmod(0o711)
    return data_dir, url


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A database of our own on the test server (None when it is unreachable)."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.Error as err:
        print(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(err).strip().splitlines()[0]}")
        yield None
        return
    name = f"agent_sessions_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- turns ------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One turn as the client saw it: chunk types and their arrival times (perf_counter)."""

    sent: float
    done: float = 0.0
    kinds: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)

    def first(self, kind: str | None = None) -> float:
        for k, t in zip(self.kinds, self.times, strict=True):
            if kind is None or k == kind:
                return t - self.sent
        raise RuntimeError(f"no {kind} chunk in {self.kinds}")

    def step_starts(self) -> list[float]:
        return [t for k, t in zip(self.kinds, self.times, strict=True) if k == "start-step"]

    def step_intervals(self) -> list[float]:
        starts = self.step_starts()
        return [b - a for a, b in itertools.pairwise(starts)]

    @property
    def wall(self) -> float:
        return self.done - self.sent


class Client:
    def __init__(self, srv: Server, http: httpx.AsyncClient) -> None:
        self.srv = srv
        self.http = http

    async def new_session(self, title: str) -> str:
        r = await self.http.post(
            f"{self.srv.base}/api/sessions", headers=self.srv.headers, json={"title": title}
        )
        r.raise_for_status()
        session_id: str = r.json()["session"]["id"]
        return session_id

    async def wait_active(self, session_id: str) -> None:
        url = f"{self.srv.base}/api/sessions/{session_id}/sandbox"
        deadline = time.monotonic() + 120
        while True:
            r = await self.http.get(url, headers=self.srv.headers)
            r.raise_for_status()
            state = r.json()["lifecycleState"]
            if state == "active":
                return
            if state == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"session {session_id} is {state}: {r.json()}")
            await asyncio.sleep(0.02)

    async def turn(self, session_id: str, model: str, expect_steps: int) -> Turn:
        body = chat_body(session_id, f"openai/{model}")
        turn = Turn(sent=time.perf_counter())
        async with self.http.stream(
            "POST", f"{self.srv.base}/api/chat", headers=self.srv.headers, json=body
        ) as r:
            if r.status_code != 200:
                raise RuntimeError(f"POST /api/chat: {r.status_code} {(await r.aread())[:500]!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.perf_counter()
                data = line[len("data: ") :]
                if data == "[DONE]":
                    turn.done = now
                    break
                chunk = json.loads(data)
                turn.kinds.append(chunk["type"])
                turn.times.append(now)
                turn.chunks.append(chunk)
        errors = [c for c in turn.chunks if c["type"] == "error"]
        steps = turn.kinds.count("start-step")
        if errors or not turn.done or steps != expect_steps or turn.kinds[-1] != "finish":
            raise RuntimeError(
                f"turn went wrong: {steps} steps (expected {expect_steps}), "
                f"errors {errors}, last {turn.kinds[-3:]}; see {self.srv.log}"
            )
        return turn


async def model_alone(model_url: str, model: str, bodies: list[dict[str, Any]]) -> list[float]:
    """Replay the agent's own request bodies with the ``openai`` SDK (streaming); the time of
    each request until its stream is consumed."""
    times: list[float] = []
    async with AsyncOpenAI(base_url=model_url, api_key="x", max_retries=0) as client:
        for i, body in enumerate([bodies[0], *bodies]):  # the first one warms the connection
            extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
            start = time.perf_counter()
            stream = await client.chat.completions.create(
                model=model, messages=body["messages"], stream=True, extra_body=extra
            )
            async for _ in stream:
                pass
            if i:
                times.append(time.perf_counter() - start)
    return times


async def recorded_requests(model_url: str, model: str) -> list[dict[str, Any]]:
    base = model_url.removesuffix("/v1")
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{base}/bench/requests", params={"model": model})
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out


# --- one database -----------------------------------------------------------------------------


@dataclass
class Options:
    steps: int
    turns: int
    first_turns: int
    concurrency: int
    concurrent_steps: int
    warmup: int


async def bench_database(srv: Server, model_url: str, opts: Options) -> list[Row]:
    limits = httpx.Limits(max_connections=opts.concurrency + 10, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        c = Client(srv, http)
        t0 = time.perf_counter()
        sessions = [await c.new_session(f"bench-{i}") for i in range(max(1, opts.concurrency))]
        await asyncio.gather(*(c.wait_active(s) for s in sessions))
        print(f"  {len(sessions)} sandboxes active in {time.perf_counter() - t0:.1f} s (untimed)")
        main_session = sessions[0]
        tools, text = f"tools-{opts.steps}", "text"
        for _ in range(opts.warmup):
            await c.turn(main_session, text, 1)
        await c.turn(main_session, tools, opts.steps + 1)

        # 1. per-step overhead; each turn's requests are replayed alone right after it, so
        # that a change in this VM's speed hits ours and the baseline alike
        turns: list[Turn] = []
        alone: list[float] = []
        cpu_sequential = 0.0
        for _ in range(opts.turns):
            before = len(await recorded_requests(model_url, tools))
            cpu0 = process_cpu(srv.proc.pid)
            turns.append(await c.turn(main_session, tools, opts.steps + 1))
            cpu_sequential += process_cpu(srv.proc.pid) - cpu0
            bodies = (await recorded_requests(model_url, tools))[before:]
            alone += await model_alone(model_url, tools, bodies)
        intervals = [dt for t in turns for dt in t.step_intervals()]
        per_step_wall = [t.wall / (opts.steps + 1) for t in turns]
        print(
            f"  part 1: {opts.turns} turns × {opts.steps} tool steps + 1 text step; "
            f"{len(alone)} model requests replayed alone, each turn's right after it"
        )

        # 2. first chunk
        firsts = [await c.turn(main_session, text, 1) for _ in range(opts.first_turns)]
        print(f"  part 2: {opts.first_turns} text-only turns")

        # 3. throughput
        many = f"tools-{opts.concurrent_steps}"
        start, cpu0 = time.perf_counter(), process_cpu(srv.proc.pid)
        conc = await asyncio.gather(
            *(c.turn(s, many, opts.concurrent_steps + 1) for s in sessions[: opts.concurrency])
        )
        wall, cpu_concurrent = time.perf_counter() - start, process_cpu(srv.proc.pid) - cpu0
        total_steps = sum(t.kinds.count("start-step") for t in conc)
        print(f"  part 3: {opts.concurrency} concurrent turns in {wall:.2f} s")

    ours50, ours99 = p50_p99(intervals)  # overhead p99: ours p99 − model p50
    alone50, _ = p50_p99(alone)
    over50 = ours50 - alone50
    return [
        latency_row("step interval (start-step Δ)", intervals),
        latency_row("turn wall / steps", per_step_wall),
        latency_row("model alone, per request", alone),
        Row(
            "step overhead (ours − model)",
            "",
            f"p50 {over50:7.1f} ms   p99 {ours99 - alone50:7.1f} ms",
            f"p50 < {STEP_OVERHEAD_P50_TARGET_MS:g} ms",
            over50 < STEP_OVERHEAD_P50_TARGET_MS,
        ),
        Row(
            "server CPU per step (part 1)",
            len(intervals) + len(turns),
            f"{cpu_sequential / (len(turns) * (opts.steps + 1)) * 1000:7.1f} ms",
        ),
        latency_row("POST → first chunk", [t.first() for t in firsts], FIRST_CHUNK_P50_TARGET_MS),
        latency_row("POST → first text-delta", [t.first("text-delta") for t in firsts]),
        latency_row("text-only turn wall", [t.wall for t in firsts]),
        Row(
            f"throughput {opts.concurrency} chats × {opts.concurrent_steps}",
            opts.concurrency,
            f"{total_steps / wall:6.1f} steps/s  {opts.concurrency / wall:5.2f} turns/s",
        ),
        Row("  wall time; turn p50/max", "", _wall_line(wall, [t.wall for t in conc])),
        Row("  server CPU per step", "", f"{cpu_concurrent / max(1, total_steps) * 1000:7.1f} ms"),
    ]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used, all its threads (``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wall_line(wall: float, walls: list[float]) -> str:
    return f"{wall:6.2f} s;  turn p50 {percentile(walls, 50):.2f} s  max {max(walls):.2f} s"


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Agent turn benchmark (see module doc).")
    parser.add_argument("--steps", type=int, default=20, help="tool steps per turn (part 1)")
    parser.add_argument("--turns", type=int, default=10, help="turns in part 1")
    parser.add_argument("--first-turns", type=int, default=30, help="text-only turns (part 2)")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent chats (part 3)")
    parser.add_argument("--concurrent-steps", type=int, default=20, help="tool steps (part 3)")
    parser.add_argument("--warmup", type=int, default=3, help="text turns before measuring")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        help="AGENT_SESSIONS_AGENT_WORKER_CONCURRENCY for the server (default: 32 per CPU)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = parser.parse_args()
    opts = Options(
        args.steps,
        args.turns,
        args.first_turns,
        args.concurrency,
        args.concurrent_steps,
        args.warmup,
    )
    server_cpu, client_cpu = pin_cpus(not args.no_pin)
    pin = bool(server_cpu)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    workers = args.worker_concurrency or "server default (32 per CPU)"
    print(
        f"{os.cpu_count()} CPUs; "
        f"{'server on CPU 0, client and model on CPU 1' if pin else 'not pinned'}; "
        f"turn worker concurrency: {workers}; load average {os.getloadavg()[0]:.1f}"
    )

    root = Path(tempfile.mkdtemp(prefix="agent-sessions-agent-bench-", dir="/tmp"))
    root.chmod(0o711)
    tables: dict[str, list[Row]] = {}
    started = time.perf_counter()
    try:
        with model_server(root, {args.steps, args.concurrent_steps}, client_cpu) as (model_url, _):
            for db in dbs:
                with contextlib.ExitStack() as stack:
                    place = server_place(stack, root, db, db)
                    if place is None:
                        continue
                    data_dir, url = place
                    print(f"[{db}] data under {data_dir}")
                    srv = stack.enter_context(
                        server(
                            data_dir,
                            url,
                            model_url,
                            UID_BASES[db],
                            server_cpu,
                            args.worker_concurrency,
                        )
                    )
                    tables[db] = asyncio.run(bench_database(srv, model_url, opts))
    finally:
        leftovers = kill_leftovers(root)
        if leftovers:
            print(f"killed {leftovers} leftover process(es) naming {root} (sandboxes)")
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end {load}")
    print(cpu_speed_line())
    for db, rows in tables.items():
        header = f"{'figure':<34} {'n':>5}  {'value':<40} {'target':<14} result"
        print(f"\n== {db} ==  (stand-in model, zero latency)")
        print(header)
        print("-" * len(header))
        for row in rows:
            print(row.line())


if __name__ == "__main__":
    main()
