"""Workspace benchmark (issue 13 item 9): the diff and the cached-diff refresh on a large repo.

    .venv/bin/python bench/workspace.py [--files 20000] [--changed 2000] [-n 9]

Builds, in a real local (bubblewrap) sandbox, a git repository of ``--files`` files (40 lines
each, 200 directories) with ``origin/HEAD`` set, then changes ``--changed`` of them: 90 %
modified (two lines each), 5 % deleted, 5 % added (untracked). Then, taking turns within every
iteration so that load from other processes hits all alike, it times

- **floor**: ``git diff --numstat`` then ``git status --porcelain`` run directly on the host in
  the same workspace directory, as the sandbox's uid (no sandbox, no parsing; see ``_host`` for
  the uid mapping): the raw git work any diff view needs;
- **diff**: ``workspace.diff.compute_diff`` through the sandbox (one exec + parsing), what
  ``GET …/diff`` costs before its JSON response;
- **refresh**: ``workspace.cached_diff.refresh_cached_diff`` (session lookup, diff, store in a
  SQLite database), what a turn's end and a hibernation pay (the DBOS step adds its one row);
- **files tree**: ``workspace.files.tree`` (``GET …/files``: 5,000 entries of the 20,000 and
  their directories) against the same ``find`` run directly on the host;
- for diagnosis, the same diff script run with bash on the host (no sandbox), and the split of
  ``diff`` into the exec and the parsing.

It prints medians, the ratios against the floor, and the targets: ours ≤ 1.5× the floor and
< 1 s absolute at 2,000 changes.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import cpu_speed_line
from agent_sessions.hooks import HookRunner
from agent_sessions.lifecycle.context import LifecycleContext, set_context
from agent_sessions.sandbox.local import LocalProvider, LocalSandbox
from agent_sessions.sandbox.local.bwrap import SANDBOX_GID, SANDBOX_UID
from agent_sessions.settings import Settings
from agent_sessions.store import Database, accounts
from agent_sessions.store import lifecycle as cas
from agent_sessions.store.diffs import save_cached_diff
from agent_sessions.store.migrate import upgrade
from agent_sessions.store.models import utcnow
from agent_sessions.store.sessions import NewSession, create_session
from agent_sessions.workspace import diff as diff_module
from agent_sessions.workspace import files as files_module
from agent_sessions.workspace.cached_diff import refresh_cached_diff

RATIO_TARGET = 1.5
ABSOLUTE_TARGET_S = 1.0
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

BUILD = r"""set -e
python3 - "$FILES" <<'EOF'
import os, sys
n = int(sys.argv[1])
for i in range(n):
    d = f"pkg{i % 200:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/mod{i:05d}.py", "w") as f:
        f.write("".join(f"line {j} of module {i}: value = {i * 40 + j}\n" for j in range(40)))
EOF
git init -q -b main
git config user.name Bench && git config user.email bench@example.com
git add -A && git commit -q -m base
git update-ref refs/remotes/origin/main HEAD
git symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/main
python3 - "$FILES" "$CHANGED" <<'EOF'
import os, sys
n, changed = int(sys.argv[1]), int(sys.argv[2])
step = n // changed
picked = [f"pkg{i % 200:03d}/mod{i:05d}.py" for i in range(0, step * changed, step)]
removed, added = changed // 20, changed // 20
for path in picked[: changed - removed - added]:
    lines = open(path).read().splitlines(True)
    lines[5] = "changed line\n"
    lines.insert(20, "inserted line\n")
    open(path, "w").write("".join(lines))
for path in picked[changed - removed - added : changed - added]:
    os.remove(path)
os.makedirs("added", exist_ok=True)
for i in range(added):
    with open(f"added/new{i:04d}.py", "w") as f:
        f.write("".join(f"new line {j}\n" for j in range(30)))
EOF
git status --porcelain | wc -l
"""


def _host(box: LocalSandbox, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` on the host in the workspace directory, as the sandbox's uid.

    In a user namespace that maps that uid to the one the sandbox sees (``unshare``, ~2 ms, no
    mount or other isolation): git records the owner's uid in the index, and a uid that
    differs from the sandbox's would make each side re-read all 20,000 files after the other
    wrote the index, which is the benchmark fighting itself, not the cost of a diff."""
    ids: dict[str, Any] = {"user": box.uid, "group": box.uid} if box.uid is not None else {}
    mapped = [f"--map-user={SANDBOX_UID}", f"--map-group={SANDBOX_GID}"]
    prefix = ["unshare", *mapped, "--"] if box.uid is not None else []
    return subprocess.run(
        [*prefix, *argv], cwd=box.workspace, env={**_HOST_ENV, "HOME": str(box.workspace)},
        capture_output=True, check=True, **ids,
    )  # fmt: skip


def floor(box: LocalSandbox) -> None:
    _host(box, ["git", "diff", "--numstat"])
    _host(box, ["git", "status", "--porcelain"])


def script_on_host(box: LocalSandbox, max_bytes: int) -> None:
    script, _ = diff_module._script(max_bytes)
    _host(box, ["bash", "-c", script])


def _cpu() -> float:
    """CPU seconds of this process and of its waited-for descendants (the sandbox's processes,
    host git): on a shared machine it moves less than wall time, so it is printed beside it."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


async def _timed(fn: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    cpu, start = _cpu(), time.perf_counter()
    await fn()
    return time.perf_counter() - start, _cpu() - cpu


async def _thread(fn: Callable[[], object]) -> None:
    await asyncio.to_thread(fn)


async def bench_files_tree(
    box: LocalSandbox, iterations: int
) -> dict[str, tuple[list[float], list[float]]]:
    """``GET …/files``'s tree (5,000 entries of the 20,000) against its own floor: the same
    ``find`` listing, cut at the same count, run directly on the host (no sandbox, no parsing)."""
    listing = (
        "find . -mindepth 1 \\( -name .git -o -name node_modules \\) -prune -o "
        "-printf '%y %s %P\\0' | head -z -n 5001 > /dev/null"
    )

    async def ours() -> None:
        await files_module.tree(box)

    return await _measure(
        {"floor": lambda: _thread(lambda: _host(box, ["bash", "-c", listing])), "files tree": ours},
        iterations,
    )


async def run(args: argparse.Namespace, data_dir: Path) -> None:
    settings = Settings(
        data_dir=data_dir,
        sandbox_uid_base=452_000,
        database_url=f"sqlite:///{data_dir / 'bench.db'}",
    )
    db = Database(settings.resolved_database_url)
    upgrade(db)
    provider = LocalProvider(settings)
    set_context(LifecycleContext(settings, db, HookRunner(None), {"local": provider}))
    box = await provider.create("bench-workspace")
    assert isinstance(box, LocalSandbox)
    try:
        started = time.perf_counter()
        built = await box.exec(
            BUILD, env={"FILES": str(args.files), "CHANGED": str(args.changed)}, timeout=900
        )
        assert built.exit_code == 0, built
        took = time.perf_counter() - started
        print(f"repository: {args.files} files, {built.stdout.strip()} status entries "
              f"({args.changed} changed), built in {took:.1f} s")  # fmt: skip
        with db.write() as s:
            account = accounts.create_account(s, name="bench")
            row, _ = create_session(s, account_id=account.id, new=NewSession(title="bench"))
            sid = row.id
            cas.set_fields(s, sid, in_states={"provisioning"}, lifecycle_state="active",
                           sandbox_state=box.state)  # fmt: skip
        max_bytes = settings.diff_max_bytes
        script, max_output = diff_module._script(max_bytes)
        last: dict[str, Any] = {}

        async def diff() -> None:
            last.update(await diff_module.compute_diff(box, max_bytes))

        async def refresh() -> None:
            assert await refresh_cached_diff(sid) == "stored"

        async def exec_only() -> None:
            last["stdout"] = (await box.exec(script, timeout=60, max_output=max_output)).stdout

        async def parse_only() -> None:
            diff_module.parse_output(last["stdout"], "", max_bytes)

        async def store_only() -> None:
            computed = {k: v for k, v in last.items() if k != "stdout"}
            await db.write_call(lambda s: save_cached_diff(s, sid, computed, utcnow()))

        main: dict[str, Callable[[], Awaitable[object]]] = {
            "floor": lambda: _thread(lambda: floor(box)),
            "diff": diff,
            "refresh": refresh,
        }
        diagnosis: dict[str, Callable[[], Awaitable[object]]] = {
            "floor": main["floor"],
            "script on host": lambda: _thread(lambda: script_on_host(box, max_bytes)),
            "exec of the script": exec_only,
            "parsing": parse_only,
            "storing the cache": store_only,
        }
        for fn in [*main.values(), *diagnosis.values()]:  # warm up: caches, index refresh
            await fn()
            await fn()
        print(f"diff: {_describe(last)}")
        for name in [n for n in main if n != "floor"]:  # each against its own floor, in turns
            report(await _measure({"floor": main["floor"], name: main[name]}, args.iterations),
                   args.iterations)  # fmt: skip
        print("files tree (against its own floor: the same find on the host):")
        await files_module.tree(box)  # warm up
        report(await bench_files_tree(box, args.iterations), args.iterations)
        print("diagnosis (the same, taking turns again):")
        report(await _measure(diagnosis, args.iterations), args.iterations, verdicts=False)
    finally:
        await box.destroy()
        db.dispose()
        set_context(None)


def _describe(diff: dict[str, Any]) -> str:
    s = diff["summary"]
    with_hunks = sum(f["diff"] is not None for f in diff["files"])
    return (
        f"{s['totalFiles']} files +{s['totalAdditions']} -{s['totalDeletions']}, {with_hunks} "
        f"with hunks, truncated={diff['truncated']}"
    )


async def _measure(
    variants: dict[str, Callable[[], Awaitable[object]]], iterations: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU seconds per variant, the variants taking turns in every iteration."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in variants}
    for _ in range(iterations):
        for name, fn in variants.items():
            wall, used = await _timed(fn)
            out[name][0].append(wall)
            out[name][1].append(used)
    return out


def report(
    measured: dict[str, tuple[list[float], list[float]]], iterations: int, verdicts: bool = True
) -> None:
    """Medians; against the floor: the ratio of medians and the median of each iteration's
    ratio (its neighbour in time: load that comes and goes hits both). CPU is shown for what
    runs on the host only (a sandbox's processes are not this process's children)."""
    floor_wall = measured["floor"][0]
    print(f"  {iterations} runs each; wall median (min); CPU median where on the host")
    for name, (wall, cpu) in measured.items():
        host = name in ("floor", "script on host")
        used = f"   cpu {statistics.median(cpu) * 1e3:6.1f} ms" if host else ""
        median = statistics.median(wall)
        line = f"  {name:<20} {median * 1e3:7.1f} ms ({min(wall) * 1e3:6.1f}){used}"
        if name != "floor":
            paired = statistics.median(w / f for w, f in zip(wall, floor_wall, strict=True))
            line += f"   / floor: {statistics.median(wall) / statistics.median(floor_wall):.2f}x"
            line += f" (paired {paired:.2f}x)"
        print(line)
    if not verdicts:
        return
    for name in [n for n in measured if n != "floor"]:
        wall = statistics.median(measured[name][0])
        ratio = wall / statistics.median(floor_wall)
        ok = ratio <= RATIO_TARGET and wall < ABSOLUTE_TARGET_S
        print(f"  {name}: {ratio:.2f}x the floor, {wall * 1e3:.0f} ms (target <= "
              f"{RATIO_TARGET:.2f}x and < {ABSOLUTE_TARGET_S:.0f} s): "
              f"{'ok' if ok else 'ABOVE TARGET'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--changed", type=int, default=2_000)
    parser.add_argument("-n", "--iterations", type=int, default=9)
    args = parser.parse_args()
    print(cpu_speed_line())
    data_dir = Path(tempfile.mkdtemp(prefix="agent-sessions-bench-ws-", dir="/tmp"))
    data_dir.chmod(0o711)  # sandbox uids must traverse it
    try:
        asyncio.run(run(args, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
