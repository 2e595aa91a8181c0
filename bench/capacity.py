"""Capacity benchmark: how many chats can stream at once (run on demand; not part of the tests).

N chats stream a reply at the same time through real HTTP (``POST /api/chat``, AI SDK UI
message stream over SSE) for N in ``--n``; the model is the stand-in (``bench/_agent_support.py``,
its own process) streaming ``--tokens`` deltas at ``--rate`` a second (100 at 50/s: 2.0 s a
reply). The same N streams go, in the same run, through a bare relay
(``bench/_relay_baseline.py``: Starlette forwarding the model's stream as UI message chunks and
appending chunk batches to one table every 20 ms), the floor any implementation pays.

Per N and server, measured from the client (one asyncio process, httpx, the N requests started
together): first token = request sent → first ``text-delta``; stretch = request sent →
``[DONE]``, ÷ the nominal reply time (tokens / rate). Also the server process's CPU seconds
(``/proc``, all threads) and its peak RSS during the N streams, and the model process's CPU
seconds (near 1.0 per second of wall: the model and client's CPU was the limit, not the server).

N streams are *held* when every reply completes with stretch p99 < 1.25 and first-token p99 <
1 s. Ours runs with ``AGENT_SESSIONS_AGENT_WORKER_CONCURRENCY`` at each of
``--worker-concurrency`` (``default``: the server's own, 32 per CPU). A server stops being
asked for a larger N after an N it failed widely (stretch p99 > 3 or replies missing).

Every turn gets a new chat (the stand-in picks its answer by the number of assistant messages);
the chats share ``--sessions`` sessions, whose sandboxes are made active before timing. With two
CPUs or more the servers are pinned to CPU 0, this process and the model to CPU 1.

    .venv/bin/python bench/capacity.py [--n 1,10,25,50,100,200] [--db sqlite|postgres|both]
        [--tokens 100] [--rate 50] [--worker-concurrency 1000,default] [--sessions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from _common import cpu_speed_line, free_port, kill_leftovers
from agent import (
    BENCH,
    Client,
    Server,
    _stop,
    _wait_healthy,
    chat_body,
    percentile,
    pin_cpus,
    postgres_database,
    process_cpu,
    server,
    server_place,
)

STRETCH_P99_HELD = 1.25
FIRST_TOKEN_P99_HELD = 1.0
STRETCH_P99_GIVE_UP = 3.0
UID_BASE = 3_300_000
"""Sandbox uids of our own (bench/agent.py and agent_ab.py use 3.10–3.30 M)."""
UID_COUNT = 1000


# --- processes --------------------------------------------------------------------------------


@contextlib.contextmanager
def model_server(root: Path, tokens: int, rate: float, cpu: list[str]) -> Iterator[Server]:
    """The stand-in model in its own process (its ``base`` is ``…/v1``)."""
    port = free_port()
    log = root / "model.log"
    cmd = [*cpu, sys.executable, str(BENCH / "_agent_support.py"), "--port", str(port)]
    cmd += ["--stream-tokens", str(tokens), "--stream-rate", str(rate)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", log, 30)
        yield Server(proc, f"http://127.0.0.1:{port}/v1", {}, log)
    finally:
        _stop(proc, "model server")


@contextlib.contextmanager
def relay_server(
    data_dir: Path, postgres_url: str | None, model_url: str, cpu: list[str]
) -> Iterator[Server]:
    port = free_port()
    log = data_dir / "relay.log"
    db = ["--postgres", postgres_url] if postgres_url else ["--sqlite", str(data_dir / "relay.db")]
    cmd = [*cpu, sys.executable, str(BENCH / "_relay_baseline.py"), "--port", str(port)]
    cmd += ["--model-url", model_url, *db]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, f"{base}/healthz", log, 30)
        yield Server(proc, base, {}, log)
    finally:
        _stop(proc, "relay")


def children_cpu(pid: int) -> float:
    """CPU seconds of the process's ended children (with theirs): our sandbox commands, which
    run on the server's CPU but outside its own figure."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- streams ----------------------------------------------------------------------------------


@dataclass
class Stream:
    first: float | None = None
    total: float | None = None
    error: str = ""


async def one_stream(http: httpx.AsyncClient, srv: Server, session_id: str) -> Stream:
    body = chat_body(session_id, "openai/stream")
    # the model alone (no server in between): the floor of the client and model's own CPU
    alone = srv.base.endswith("/v1")
    url = f"{srv.base}/chat/completions" if alone else f"{srv.base}/api/chat"
    if alone:
        body = {"model": "stream", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    delta = '"content":"t' if alone else '"text-delta"'
    finish = '"finish_reason":"stop"' if alone else '"finish"'
    out = Stream()
    sent = time.perf_counter()
    finished = False
    try:
        async with http.stream("POST", url, headers=srv.headers, json=body) as r:
            if r.status_code != 200:
                out.error = f"{r.status_code} {(await r.aread())[:200]!r}"
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    out.total = time.perf_counter() - sent
                    break
                # the type is all we need: no JSON parsing on the client's busy CPU
                if out.first is None and delta in data:
                    out.first = time.perf_counter() - sent
                elif '"type":"error"' in data.replace(" ", ""):
                    out.error = data[:200]
                elif finish in data:
                    finished = True
    except httpx.HTTPError as err:
        out.error = f"{type(err).__name__}: {err}"
    if not out.error and (out.first is None or out.total is None or not finished):
        out.error = f"incomplete (first {out.first}, total {out.total}, finish {finished})"
    if out.error:
        out.total = None
    return out


@dataclass
class Result:
    n: int
    complete: int
    stretch: tuple[float, float]
    first_ms: tuple[float, float]
    cpu: float
    child_cpu: float
    rss: float
    model_cpu: float
    wall: float
    errors: list[str]

    @property
    def held(self) -> bool:
        return (
            self.complete == self.n
            and self.stretch[1] < STRETCH_P99_HELD
            and self.first_ms[1] < FIRST_TOKEN_P99_HELD * 1000
        )

    @property
    def failed_widely(self) -> bool:
        return self.complete < self.n or self.stretch[1] > STRETCH_P99_GIVE_UP


async def run_n(srv: Server, sessions: list[str], n: int, nominal: float, model_pid: int) -> Result:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        peak = rss_mib(srv.proc.pid)
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_mib(srv.proc.pid))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

        sampler = asyncio.create_task(sample())
        cpu0, model0, start = process_cpu(srv.proc.pid), process_cpu(model_pid), time.monotonic()
        child0 = children_cpu(srv.proc.pid)
        streams = await asyncio.gather(
            *(one_stream(http, srv, sessions[i % len(sessions)]) for i in range(n))
        )
        wall = time.monotonic() - start
        cpu, model_cpu = process_cpu(srv.proc.pid) - cpu0, process_cpu(model_pid) - model0
        child_cpu = children_cpu(srv.proc.pid) - child0
        stop.set()
        await sampler
    done = [s for s in streams if s.total is not None and s.first is not None]
    stretches = [s.total / nominal for s in done if s.total is not None] or [float("inf")]
    firsts = [s.first * 1000 for s in done if s.first is not None] or [float("inf")]
    return Result(
        n,
        len(done),
        (percentile(stretches, 50), percentile(stretches, 99)),
        (percentile(firsts, 50), percentile(firsts, 99)),
        cpu,
        child_cpu,
        peak,
        model_cpu,
        wall,
        sorted({s.error for s in streams if s.error})[:3],
    )


async def prepare(srv: Server, count: int, nominal: float, model_pid: int) -> list[str]:
    """Sessions with active sandboxes (ours) and one warm-up stream; not timed."""
    sessions = ["none"]
    if srv.headers:  # ours, not the relay
        async with httpx.AsyncClient(timeout=300) as http:
            c = Client(srv, http)
            sessions = [await c.new_session(f"cap-{i}") for i in range(count)]
            await asyncio.gather(*(c.wait_active(s) for s in sessions))
    warm = await run_n(srv, sessions, 1, nominal, model_pid)
    if warm.complete != 1:
        raise RuntimeError(f"warm-up stream failed: {warm.errors}; see {srv.log}")
    return sessions


# --- main -------------------------------------------------------------------------------------


def line(name: str, r: Result) -> str:
    return (
        f"{name:<14} {r.n:>4} {r.complete:>4}/{r.n:<4} {r.stretch[0]:6.2f} {r.stretch[1]:6.2f}"
        f"  {r.first_ms[0]:7.0f} {r.first_ms[1]:7.0f}  {r.cpu:7.1f} {r.cpu / r.n * 1000:7.0f}"
        f" {r.cpu / r.wall:5.2f} {r.child_cpu:6.1f}"
        f"  {r.rss:6.0f}  {r.model_cpu / r.wall:5.2f}  {'yes' if r.held else 'no'}"
    )


HEADER = (
    f"{'server':<14} {'N':>4} {'complete':>9} {'str50':>6} {'str99':>6}  {'ft50ms':>7} "
    f"{'ft99ms':>7}  {'cpu s':>7} {'ms/strm':>7} {'cores':>5} {'child':>6}  {'rssMiB':>6}  "
    f"{'model':>5}  held"
)


def bench_database(
    db: str,
    root: Path,
    model: Server,
    args: argparse.Namespace,
    server_cpu: list[str],
) -> dict[str, list[Result]]:
    nominal = args.tokens / args.rate
    model_url, model_pid = model.base, model.proc.pid
    results: dict[str, list[Result]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {"model alone": model} if args.model_alone else {}
        sessions: dict[str, list[str]] = {}
        relay_dir = root / f"{db}-relay"
        relay_dir.mkdir()
        relay_url = stack.enter_context(postgres_database()) if db == "postgres" else None
        if db == "postgres" and relay_url is None:
            return {}
        servers["baseline"] = stack.enter_context(
            relay_server(relay_dir, relay_url, model_url, server_cpu)
        )
        for k, wc in enumerate(args.worker_concurrency):
            name = f"ours wc={wc}"
            place = server_place(stack, root, f"{db}-ours-{wc}", db)
            if place is None:
                return {}
            data_dir, url = place
            uid_base = UID_BASE + (0 if db == "sqlite" else 50_000) + k * UID_COUNT * 2
            workers = None if wc == "default" else int(wc)
            servers[name] = stack.enter_context(
                server(data_dir, url, model_url, uid_base, server_cpu, workers)
            )
        for name, srv in servers.items():
            sessions[name] = asyncio.run(prepare(srv, args.sessions, nominal, model_pid))
            time.sleep(2)
            cpu0 = process_cpu(srv.proc.pid)
            time.sleep(3)
            idle = (process_cpu(srv.proc.pid) - cpu0) / 3
            print(f"  [{db}] {name}: ready (pid {srv.proc.pid}); idle CPU {idle * 100:.0f} %")
            results[name] = []
        active = set(servers)
        for n in args.n:
            for name, srv in servers.items():
                if name not in active:
                    continue
                with profiled(srv, name, db, n, args):
                    r = asyncio.run(run_n(srv, sessions[name], n, nominal, model_pid))
                results[name].append(r)
                print(f"  [{db}] {line(name, r)}  {' | '.join(r.errors)}", flush=True)
                if r.failed_widely:
                    active.discard(name)
                time.sleep(1)  # let the last writes settle
            if not active:
                break
    return results


@contextlib.contextmanager
def profiled(srv: Server, name: str, db: str, n: int, args: argparse.Namespace) -> Iterator[None]:
    """``py-spy record`` of the server (all threads, CPU samples only) while it streams."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if n != args.profile_n or not srv.headers or not Path(spy).exists():
        yield
        return
    out = Path(args.profile_dir) / f"capacity-{db}-{name.split('=')[-1]}-n{n}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [spy, "record", "--pid", str(srv.proc.pid), "-r", "200", "--format", "raw"]
    cmd += ["--nonblocking", "--threads", "--gil", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        print(f"  profile: {out}")


def held(results: list[Result]) -> int:
    """The largest N held such that every smaller N asked was held too."""
    best = 0
    for r in results:
        if not r.held:
            break
        best = r.n
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description="Streaming capacity benchmark (module doc).")
    parser.add_argument("--n", default="1,10,25,50,100,200", help="concurrent streams, ascending")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tokens", type=int, default=100, help="deltas per reply")
    parser.add_argument("--rate", type=float, default=50.0, help="deltas per second")
    parser.add_argument(
        "--worker-concurrency",
        default="1000,default",
        help="AGENT_SESSIONS_AGENT_WORKER_CONCURRENCY values for ours "
        "('default': the server's own, 32 per CPU)",
    )
    parser.add_argument("--sessions", type=int, default=10, help="sessions the chats share")
    parser.add_argument(
        "--model-alone",
        action="store_true",
        help="also stream the N straight from the model (the client and model's own floor)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--profile-n",
        type=int,
        default=0,
        help="py-spy record each of our servers while it streams this N (raw collapsed stacks)",
    )
    parser.add_argument("--profile-dir", default="/tmp", help="where the profiles go")
    args = parser.parse_args()
    args.n = sorted(int(x) for x in args.n.split(","))
    args.worker_concurrency = [w.strip() for w in args.worker_concurrency.split(",")]
    server_cpu, client_cpu = pin_cpus(not args.no_pin)
    pin = bool(server_cpu)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"{os.cpu_count()} CPUs; "
        f"{'servers on CPU 0, client and model on CPU 1' if pin else 'not pinned'}; "
        f"{args.tokens} deltas at {args.rate:g}/s (nominal {args.tokens / args.rate:.2f} s); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    root = Path(tempfile.mkdtemp(prefix="agent-sessions-capacity-", dir="/tmp"))
    root.chmod(0o711)
    tables: dict[str, dict[str, list[Result]]] = {}
    started = time.perf_counter()
    try:
        with model_server(root, args.tokens, args.rate, client_cpu) as model:
            for db in dbs:
                tables[db] = bench_database(db, root, model, args, server_cpu)
    finally:
        leftovers = kill_leftovers(root)
        if leftovers:
            print(f"killed {leftovers} leftover process(es) naming {root} (sandboxes)")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end {load}")
    print(cpu_speed_line())
    print(
        f"held: every reply complete, stretch p99 < {STRETCH_P99_HELD}, first token p99 < "
        f"{FIRST_TOKEN_P99_HELD:g} s; ms/strm = server CPU ms per stream; cores = server CPU s / "
        "wall s; child = CPU s of the server's child processes (sandbox commands); model = model "
        "CPU s / wall s"
    )
    for db, results in tables.items():
        print(f"\n== {db} ==")
        print(HEADER)
        print("-" * len(HEADER))
        for name, rows in results.items():
            for r in rows:
                print(line(name, r))
        base = held(results.get("baseline", []))
        summary = ", ".join(
            f"{name} {held(rows)} ({held(rows) / base:.2f}x)" if base else f"{name} {held(rows)}"
            for name, rows in results.items()
            if name not in ("baseline", "model alone")
        )
        print(f"held: baseline {base}; {summary}")


if __name__ == "__main__":
    main()
