"""Sandbox benchmark: exec round trip of ``true``, then (if present) snapshot/restore.

    .venv/bin/python bench/sandbox.py [-n 300] [--skip-snapshot]

Exec part (issue 3 item 7): ``true`` through the local provider vs the very same host command
line (nsenter → setpriv → prlimit → choom → bwrap … true) run directly with
``subprocess.run``, vs a minimal ``bwrap --unshare-all … true``, vs plain ``subprocess.run`` of
``/bin/true``. Target: provider ≤ 1.3× the same argv run directly. The variants take turns
within every iteration, so load from other processes on a shared machine hits them alike.
The snapshot part lives in ``bench/_snapshot_bench.py`` (``run(args)``) and runs afterwards
when that module exists.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent_sessions.sandbox.local import LocalProvider, LocalSandbox
from agent_sessions.settings import Settings

MINIMAL_BWRAP = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                 "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                 "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
                 "--", "/bin/true"]  # fmt: skip
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
LABELS = {
    "provider": "provider.exec('true')",
    "direct": "same argv via subprocess.run",
    "minimal": "minimal bwrap --unshare-all true",
    "raw": "subprocess.run(['/bin/true'])",
}


def _direct(box: LocalSandbox, netns: str | None) -> None:
    argv, fds = box.launch("true", cwd_parts=[], env=None, cpu_seconds=121, netns=netns)
    try:
        subprocess.run(argv, pass_fds=fds, check=True, capture_output=True,
                       start_new_session=True, env=_HOST_ENV)  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def bench_exec(n: int, data_dir: Path) -> dict[str, list[float]]:
    provider = LocalProvider(Settings(data_dir=data_dir, sandbox_uid_base=450_000))
    box = await provider.create("bench")
    assert isinstance(box, LocalSandbox)
    try:
        for _ in range(10):  # warm up: page cache, seccomp program, child watcher, namespace
            await box.exec("true")
        netns = box.netns.path() if box.netns is not None else None
        shown, fds = box.launch("true", cwd_parts=[], env=None, cpu_seconds=121, netns=netns)
        for fd in fds:
            os.close(fd)
        options = box.jail.options(cwd_parts=[], env=box.jail.environment(None), seccomp_fd=9,
                                   netns=netns)  # fmt: skip
        print("argv:", " ".join(shown), "\nbwrap --args:", " ".join(options), "\n")
        results: dict[str, list[float]] = {key: [] for key in LABELS}
        for _ in range(n):
            start = time.perf_counter()
            r = await box.exec("true")
            results["provider"].append(time.perf_counter() - start)
            assert r.exit_code == 0, r
            results["direct"].append(_timed(lambda: _direct(box, netns)))
            results["minimal"].append(_timed(lambda: subprocess.run(MINIMAL_BWRAP, check=True)))
            results["raw"].append(_timed(lambda: subprocess.run(["/bin/true"], check=True)))
        return results
    finally:
        await box.destroy()


def report(results: dict[str, list[float]]) -> None:
    print(f"exec round trip of `true`, {len(results['provider'])} runs each")
    medians = {}
    for key, label in LABELS.items():
        samples = sorted(results[key])
        medians[key] = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"  {label:<34} median {medians[key] * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms")
    ratio = medians["provider"] / medians["direct"]
    verdict = "ok" if ratio <= 1.3 else "ABOVE TARGET"
    print(f"  provider / same argv direct: {ratio:.2f}x (target <= 1.30x) {verdict}")
    print(f"  provider / minimal bwrap:    {medians['provider'] / medians['minimal']:.2f}x")
    print(f"  provider / plain /bin/true:  {medians['provider'] / medians['raw']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--iterations", type=int, default=300)
    parser.add_argument("--skip-snapshot", action="store_true")
    args, _ = parser.parse_known_args()
    data_dir = Path(tempfile.mkdtemp(prefix="agent-sessions-bench-", dir="/tmp"))
    data_dir.chmod(0o711)  # sandbox uids must traverse it
    try:
        report(asyncio.run(bench_exec(args.iterations, data_dir)))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.skip_snapshot:
        return
    sys.path.insert(0, str(Path(__file__).parent))
    if importlib.util.find_spec("_snapshot_bench") is None:
        print("snapshot bench: bench/_snapshot_bench.py not present, skipped")
        return
    importlib.import_module("_snapshot_bench").run(args)


if __name__ == "__main__":
    main()
