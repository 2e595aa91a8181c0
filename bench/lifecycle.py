"""Lifecycle benchmark (run on demand; not part of the tests). Issue 4 item 8.

Starts the real ``agent-sessions serve`` (SQLite, local bubblewrap provider, a fresh temporary
``DATA_DIR`` per part, an account from ``agent-sessions accounts create --json``) and measures:

1. provisioning: ``POST /api/sessions`` (no repo) until ``GET …/sandbox`` says ``active``
   (polled every 5 ms), N sessions one after another → p50/p99. Target p50 < 300 ms;
2. ``POST …/sandbox/hibernate`` and ``…/resume`` (both return when done) on workspaces of
   10 MB and 200 MB, filled from this process through the sandbox provider with a realistic mix
   (``bench/_lifecycle_fill.py``) → p50 (p99 from 20 samples). Target: resume of 10 MB < 500 ms;
3. memory per watched idle session: server RSS (``/proc/<pid>/status`` VmRSS) after a warm-up,
   then after 2,000 more sessions are ``active`` with their watcher workflow pending (checked in
   DBOS's ``workflow_status``) → ΔRSS / 2,000. Target < 50 KiB. Threads are reported too: an
   async DBOS workflow started from a synchronous context holds a thread while it sleeps.

The data directory is made with ``mkdtemp(dir="/tmp")`` and chmod 0711 because every sandbox
uid must traverse it (a 0700 parent breaks bubblewrap's binds). Everything (servers, sandbox
helpers, the directory) is removed at the end.

    .venv/bin/python bench/lifecycle.py [--quick] [--sessions 50] [--sizes-mb 10,200]
        [--repeats 5] [--watched 2000] [--parts provision,snapshot,rss]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from _common import NO_ACCOUNT_LIMITS, create_account, free_port, kill_leftovers
from _lifecycle_fill import command as fill_command  # bench/ is sys.path[0] when run

CLI = str(Path(sys.executable).with_name("agent-sessions"))
PROVISION_P50_TARGET_MS = 300.0
RESUME_10MB_TARGET_MS = 500.0
RSS_PER_SESSION_TARGET_KIB = 50.0
POLL_SECONDS = 0.005
MB = 1 << 20


# --- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Row:
    """One line of the final table."""

    figure: str
    n: int
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    def line(self) -> str:
        verdict = "" if self.met is None else ("ok" if self.met else "MISSED")
        return (
            f"{self.figure:<30} {self.n:>5}  {self.value:<34} {self.target:<15} "
            f"{verdict:<7} {self.note}"
        ).rstrip()


def latency_row(name: str, seconds: list[float], target_ms: float | None = None) -> Row:
    ms = [s * 1000 for s in seconds]
    p50 = percentile(ms, 50)
    value = f"p50 {p50:7.1f} ms"
    value += f"  p99 {percentile(ms, 99):7.1f} ms" if len(ms) >= 20 else f"  max {max(ms):7.1f} ms"
    if target_ms is None:
        return Row(name, len(ms), value)
    return Row(name, len(ms), value, f"p50 < {target_ms:g} ms", p50 < target_ms)


# --- processes --------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """Numeric fields of ``/proc/<pid>/status`` (kB figures stay in KiB)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    headers: dict[str, str]
    log: Path
    uid_base: int


def make_data_dir(root: Path, name: str) -> Path:
    """A DATA_DIR every sandbox uid can traverse (0711 all the way down from /tmp)."""
    path = root / name
    path.mkdir()
    path.chmod(0o711)
    return path


UID_BASE = 3_000_000
"""Sandbox host uids of the bench. Not the default 200,000: ``stop()`` kills every process of a
sandbox's uid, so a test suite running beside the bench with the same range kills our
sandboxes (seen as exit 137 while filling a workspace)."""
UID_COUNT = 20_000


def _env(data_dir: Path, idle: int, hard: int, uid_base: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SESSIONS_")}
    env.update(NO_ACCOUNT_LIMITS)
    env["AGENT_SESSIONS_DATA_DIR"] = str(data_dir)
    env["AGENT_SESSIONS_SANDBOX_UID_BASE"] = str(uid_base)
    env["AGENT_SESSIONS_SANDBOX_UID_COUNT"] = str(UID_COUNT)
    env["AGENT_SESSIONS_IDLE_TIMEOUT_SECONDS"] = str(idle)
    env["AGENT_SESSIONS_HARD_TIMEOUT_SECONDS"] = str(hard)
    return env


@contextlib.contextmanager
def server(
    data_dir: Path, uid_base: int, *, idle: int = 86_400, hard: int = 172_800
) -> Iterator[Server]:
    """Create an account, run ``serve`` until the block ends (SIGTERM, then SIGKILL)."""
    env = _env(data_dir, idle, hard, uid_base)
    headers = create_account(CLI, env)
    port = free_port()
    log = data_dir / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CLI, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; log:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield Server(proc, base, data_dir, headers, log, uid_base)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("  server did not stop within 30 s of SIGTERM; killing it")
            proc.kill()
            proc.wait()


# --- HTTP helpers -----------------------------------------------------------------------------


def create_session(client: httpx.Client, srv: Server, title: str) -> dict[str, Any]:
    r = client.post(f"{srv.base}/api/sessions", headers=srv.headers, json={"title": title})
    r.raise_for_status()
    session: dict[str, Any] = r.json()["session"]
    return session


def wait_active(client: httpx.Client, srv: Server, session_id: str, timeout: float = 60) -> None:
    url = f"{srv.base}/api/sessions/{session_id}/sandbox"
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(url, headers=srv.headers)
        r.raise_for_status()
        body = r.json()
        state = body["lifecycleState"]
        if state == "active":
            return
        if state == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"session {session_id} is {state}: {body.get('lifecycleError')}")
        time.sleep(POLL_SECONDS)


def get_session(client: httpx.Client, srv: Server, session_id: str) -> dict[str, Any]:
    r = client.get(f"{srv.base}/api/sessions/{session_id}", headers=srv.headers)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    session: dict[str, Any] = body.get("session", body)
    return session


def action(client: httpx.Client, srv: Server, session_id: str, name: str, want: str) -> float:
    """POST a sandbox action; returns its wall time, checking the state it ends in."""
    start = time.perf_counter()
    r = client.post(
        f"{srv.base}/api/sessions/{session_id}/sandbox/{name}", headers=srv.headers, timeout=900
    )
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    state = r.json()["lifecycleState"]
    if state != want:
        raise RuntimeError(f"{name} of {session_id} ended {state}: {r.json()}")
    return elapsed


# --- part 1: provisioning ---------------------------------------------------------------------


def bench_provision(root: Path, uid_base: int, n: int, warmup: int) -> list[Row]:
    with (
        server(make_data_dir(root, "provision"), uid_base) as srv,
        httpx.Client(timeout=30) as client,
    ):
        for i in range(warmup):
            wait_active(client, srv, create_session(client, srv, f"warm-{i}")["id"])
        times: list[float] = []
        for i in range(n):
            start = time.perf_counter()
            session = create_session(client, srv, f"bench-{i}")
            wait_active(client, srv, session["id"])
            times.append(time.perf_counter() - start)
        print(f"  provisioned {n} sessions one after another")
    return [latency_row("provision POST→active", times, PROVISION_P50_TARGET_MS)]


# --- part 2: hibernate / resume ---------------------------------------------------------------


async def fill_workspace(srv: Server, state: dict[str, Any], size: int) -> tuple[int, int]:
    """Write the mix through the provider, as the sandbox uid; returns (small files, bytes)."""
    from agent_sessions.sandbox import provider_from_settings
    from agent_sessions.settings import Settings

    settings = Settings(
        data_dir=srv.data_dir, sandbox_uid_base=srv.uid_base, sandbox_uid_count=UID_COUNT
    )
    provider = provider_from_settings(settings)
    box = await provider.connect(state)
    result = await box.exec(fill_command(size), timeout=900)
    if result.exit_code != 0:
        raise RuntimeError(f"fill failed ({result.exit_code}): {result.stderr[-2000:]}")
    files, written = result.stdout.split()
    return int(files), int(written)


def bench_snapshot(
    root: Path, uid_base: int, sizes_mb: list[int], repeats: int, repeats_large: int
) -> list[Row]:
    rows: list[Row] = []
    with (
        server(make_data_dir(root, "snapshot"), uid_base) as srv,
        httpx.Client(timeout=30) as client,
    ):
        for size_mb in sizes_mb:
            session = create_session(client, srv, f"snap-{size_mb}")
            while not session["id"][0].isalnum():
                # Known bug (reported): the local provider names snapshots "<id>-<hex>" and
                # snapshot ids must start with [A-Za-z0-9], so hibernating fails for the ~3 %
                # of session ids that start with "_" or "-". Measure a session that works.
                print(f"  skipping session {session['id']!r} (id starts with a symbol)")
                session = create_session(client, srv, f"snap-{size_mb}")
            sid = session["id"]
            wait_active(client, srv, sid)
            state = get_session(client, srv, sid)["sandboxState"]
            t0 = time.perf_counter()
            files, written = asyncio.run(fill_workspace(srv, state, size_mb * MB))
            print(
                f"  {size_mb} MB workspace: {files:,} small files + 4 large, "
                f"{written / MB:.1f} MB (filled in {time.perf_counter() - t0:.1f} s)"
            )
            hib: list[float] = []
            res: list[float] = []
            snap_bytes = 0
            rounds = repeats_large if size_mb >= 100 else repeats
            for i in range(rounds):
                hib.append(action(client, srv, sid, "hibernate", "hibernated"))
                snap_bytes = int(get_session(client, srv, sid)["snapshotSizeBytes"] or 0)
                res.append(action(client, srv, sid, "resume", "active"))
                print(
                    f"    round {i + 1}/{rounds}: hibernate {hib[-1] * 1000:.0f} ms, "
                    f"resume {res[-1] * 1000:.0f} ms"
                )
            note = f"snapshot {snap_bytes / MB:.1f} MB"
            rows.append(latency_row(f"hibernate {size_mb} MB", hib))
            rows[-1].note = note
            target = RESUME_10MB_TARGET_MS if size_mb == 10 else None
            rows.append(latency_row(f"resume {size_mb} MB", res, target))
            rows[-1].note = note
    return rows


# --- part 3: memory per watched session -------------------------------------------------------


def _counts(data_dir: Path) -> tuple[dict[str, int], int]:
    """Sessions per lifecycle state, and watcher workflows pending in DBOS (read-only)."""
    app = sqlite3.connect(f"file:{data_dir / 'agent-sessions.db'}?mode=ro", uri=True, timeout=30)
    try:
        states = dict(
            app.execute("SELECT lifecycle_state, count(*) FROM sessions GROUP BY 1").fetchall()
        )
    finally:
        app.close()
    sysdb = sqlite3.connect(f"file:{data_dir / 'dbos.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        (watching,) = sysdb.execute(
            "SELECT count(*) FROM workflow_status WHERE name LIKE '%watch' AND status = 'PENDING'"
        ).fetchone()
    finally:
        sysdb.close()
    return {str(k): int(v) for k, v in states.items()}, int(watching)


def _settled_status(pid: int, seconds: float = 3.0) -> dict[str, int]:
    """``/proc`` status after a pause, the median VmRSS of three reads a second apart."""
    time.sleep(seconds)
    reads = []
    for _ in range(3):
        reads.append(proc_status(pid))
        time.sleep(1)
    reads.sort(key=lambda s: s["VmRSS"])
    return reads[1]


def wait_all_watched(srv: Server, total: int, timeout: float) -> tuple[dict[str, int], int]:
    deadline = time.monotonic() + timeout
    last = 0.0
    while True:
        states, watching = _counts(srv.data_dir)
        if states.get("active", 0) >= total and watching >= total:
            return states, watching
        if states.get("failed"):
            raise RuntimeError(f"sessions failed: {states}; see {srv.log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all watched after {timeout:.0f} s: {states}, {watching}")
        if time.monotonic() - last > 10:
            last = time.monotonic()
            print(f"    states {states}, watchers pending {watching}", flush=True)
        time.sleep(0.5)


def _db_files(pid: int) -> tuple[int, int]:
    """Open file descriptors of the server on SQLite files, and their total size (KiB): each
    pooled connection keeps its own page cache (up to 2 MiB by default) as the files grow."""
    fds, size = 0, 0
    seen: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.endswith((".db", ".sqlite", "-wal")):
                fds += 1
                if target not in seen:
                    seen.add(target)
                    size += os.stat(target).st_size
    return fds, size // 1024


def bench_rss(
    root: Path, uid_base: int, watched: int, warmup: int, concurrency: int, steps: int
) -> list[Row]:
    with (
        server(make_data_dir(root, "rss"), uid_base) as srv,
        httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client,
    ):
        pid = srv.proc.pid
        for i in range(warmup):
            wait_active(client, srv, create_session(client, srv, f"warm-{i}")["id"])
        wait_all_watched(srv, warmup, 60)
        before = _settled_status(pid)
        print(
            f"  after warm-up ({warmup} sessions): VmRSS {before['VmRSS'] / 1024:.1f} MiB, "
            f"threads {before['Threads']}, SQLite fds/KiB {_db_files(pid)}"
        )
        start = time.perf_counter()
        created, all_active_s = 0, 0.0
        # RSS at every step: the slope of the last steps is the marginal cost once the
        # one-off growth (SQLite page caches filling, thread pool growing) has happened.
        curve: list[tuple[int, dict[str, int]]] = [(0, before)]

        def one(i: int) -> None:
            create_session(client, srv, f"watched-{i}")

        with ThreadPoolExecutor(concurrency) as pool:
            for step in range(1, steps + 1):
                upto = watched * step // steps
                list(pool.map(one, range(created, upto)))
                created = upto
                states, watching = wait_all_watched(srv, warmup + created, max(600, watched))
                if step == steps:
                    all_active_s = time.perf_counter() - start
                status = _settled_status(pid, 1.0)
                curve.append((created, status))
                print(
                    f"    {created}/{watched} watched ({time.perf_counter() - start:.0f} s): "
                    f"VmRSS {status['VmRSS'] / 1024:.1f} MiB, threads {status['Threads']}, "
                    f"SQLite fds/KiB {_db_files(pid)}",
                    flush=True,
                )
        after = _settled_status(pid)
        per = (after["VmRSS"] - before["VmRSS"]) / watched
        half = curve[len(curve) // 2]
        marginal = (after["VmRSS"] - half[1]["VmRSS"]) / max(1, watched - half[0])
        print(
            f"  {watched} sessions active and watched after {all_active_s:.1f} s ({states}, "
            f"watchers pending {watching}); VmRSS {after['VmRSS'] / 1024:.1f} MiB "
            f"(HWM {after['VmHWM'] / 1024:.1f} MiB), threads {after['Threads']}"
        )
    return [
        Row(
            "RSS per watched session",
            watched,
            f"{per:.1f} KiB  ({before['VmRSS'] / 1024:.0f} → {after['VmRSS'] / 1024:.0f} MiB)",
            f"< {RSS_PER_SESSION_TARGET_KIB:g} KiB",
            per < RSS_PER_SESSION_TARGET_KIB,
        ),
        Row(
            "  marginal, last half",
            watched - half[0],
            f"{marginal:.1f} KiB",
            note=f"from {half[0]} to {watched} sessions",
        ),
        Row("server threads", watched, f"{before['Threads']} → {after['Threads']}"),
        Row(
            "provision throughput",
            watched,
            f"{watched / all_active_s:.0f} sessions/s to all active",
            note=f"{concurrency} concurrent POSTs",
        ),
    ]


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Agent Sessions lifecycle benchmark (see doc).")
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument("--sessions", type=int, help="provisioning samples (default 50)")
    parser.add_argument("--sizes-mb", help="workspace sizes, comma-separated (default 10,200)")
    parser.add_argument("--repeats", type=int, help="hibernate/resume rounds (default 5)")
    parser.add_argument(
        "--repeats-large", type=int, help="rounds for sizes of 100 MB and more (default 3)"
    )
    parser.add_argument("--watched", type=int, help="sessions for the RSS part (default 2000)")
    parser.add_argument("--warmup", type=int, default=5, help="sessions before measuring")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="parallel POSTs in the RSS part (DBOS's thread pool grows with it and never shrinks)",
    )
    parser.add_argument("--steps", type=int, default=4, help="RSS read-outs along the way")
    parser.add_argument("--parts", default="provision,snapshot,rss")
    parser.add_argument(
        "--base-dir",
        default="/tmp",
        help="where the temporary DATA_DIR goes (e.g. /dev/shm to take the disk out)",
    )
    parser.add_argument("--uid-base", type=int, default=UID_BASE, help="first sandbox host uid")
    args = parser.parse_args()
    quick = args.quick
    sessions = args.sessions or (10 if quick else 50)
    sizes = [int(s) for s in (args.sizes_mb or ("10,40" if quick else "10,200")).split(",")]
    repeats = args.repeats or (2 if quick else 5)
    repeats_large = args.repeats_large or (2 if quick else 3)
    watched = args.watched or (100 if quick else 2000)
    parts = set(args.parts.split(","))

    root = Path(tempfile.mkdtemp(prefix="agent-sessions-lifecycle-", dir=args.base_dir))
    root.chmod(0o711)
    print(f"data under {root}; {os.cpu_count()} CPUs; uid {os.geteuid()}")
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        if "provision" in parts:
            print(f"[1/3] provisioning latency, {sessions} sessions")
            rows += bench_provision(root, args.uid_base, sessions, args.warmup)
        if "snapshot" in parts:
            print(f"[2/3] hibernate/resume, {sizes} MB × {repeats} ({repeats_large} from 100 MB)")
            rows += bench_snapshot(root, args.uid_base, sizes, repeats, repeats_large)
        if "rss" in parts:
            print(f"[3/3] memory per watched session, {watched} sessions")
            rows += bench_rss(
                root, args.uid_base, watched, max(args.warmup, 1), args.concurrency, args.steps
            )
    finally:
        leftovers = kill_leftovers(root)
        if leftovers:
            print(f"warning: killed {leftovers} leftover process(es) naming {root}")
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s\n")
    header = f"{'figure':<30} {'n':>5}  {'value':<34} {'target':<15} {'result':<7} note"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    main()
