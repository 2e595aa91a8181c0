"""Snapshot benchmark: the local snapshot store vs ``tar -I 'zstd -T0 -3'`` on the same tree.

Generates a ~200 MB workspace (20,000 small source-like files plus a few large ones, some
compressible, some random) in a temporary directory, then times snapshot and restore through
:class:`~agent_sessions.snapshots.LocalSnapshotStore` and through the tar/zstd CLI, and prints
MB/s (of workspace data) and the store/CLI speed ratio. Target: ratio ≥ 0.8 both ways.

``bench/sandbox.py`` calls :func:`run`; standalone: ``.venv/bin/python bench/_snapshot_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent_sessions.snapshots import LocalSnapshotStore

_WORDS = tuple(
    [
        "def",
        "return",
        "self",
        "import",
        "from",
        "class",
        "async",
        "await",
        "for",
        "in",
        "if",
        "else",
        "elif",
        "while",
        "try",
        "except",
        "finally",
        "with",
        "as",
        "lambda",
        "yield",
        "None",
        "True",
        "False",
        "value",
        "result",
        "items",
        "data",
        "config",
        "path",
        "name",
        "request",
        "response",
        "session",
        "sandbox",
        "workspace",
        "snapshot",
        "store",
        "agent",
        "model",
        "tool",
        "stream",
    ]
)
_MB = 1 << 20


def _text_corpus(rng: random.Random, size: int) -> bytes:
    """Source-like text: indented lines of keywords and identifiers (zstd -3 gets ~3-4x)."""
    lines: list[str] = []
    total = 0
    while total < size:
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choices(_WORDS, k=rng.randint(3, 12))) + f"  # {total}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def generate_workspace(root: Path, *, small_files: int = 20_000, seed: int = 1) -> int:
    """Write the benchmark tree under ``root``; returns its size in bytes."""
    rng = random.Random(seed)
    corpus = _text_corpus(rng, 4 * _MB)
    total = 0
    per_dir = 100
    for i in range(small_files):
        d = root / f"pkg{i // per_dir // 20:02d}" / f"mod{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = int(rng.lognormvariate(7.6, 0.9))  # median ~2 KB, mean ~3 KB, long tail
        size = max(16, min(size, 64 * 1024))
        if i % 10 == 0:  # a tenth are binary assets: incompressible
            data = rng.randbytes(size)
        else:
            start = rng.randrange(0, len(corpus) - size)
            data = corpus[start : start + size]
        (d / f"file{i:05d}.py").write_bytes(data)
        total += size
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    os.symlink("pkg00/mod000/file00000.py", root / "link-to-file")
    big = root / "assets"
    big.mkdir()
    # Large files: two text-like (logs, data dumps), one random (media), one half/half.
    remaining = max(200 * _MB - total, 40 * _MB)
    plan = [("log.txt", 0.3, "text"), ("dump.sql", 0.25, "text"), ("video.bin", 0.3, "random")]
    plan.append(("mixed.bin", 0.15, "mixed"))
    for name, share, kind in plan:
        size = int(remaining * share)
        with open(big / name, "wb") as f:
            written = 0
            while written < size:
                n = min(4 * _MB, size - written)
                if kind == "text" or (kind == "mixed" and (written // (4 * _MB)) % 2 == 0):
                    off = rng.randrange(0, len(corpus) - n) if n < len(corpus) else 0
                    f.write(corpus[off : off + n])
                else:
                    f.write(os.urandom(n))
                written += n
        total += size
    return total


_ROWS = (
    "cli snapshot",
    "cli snapshot+sync",
    "store snapshot",
    "cli restore",
    "cli restore+sync",
    "store restore",
)


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args: argparse.Namespace | None = None) -> None:
    """Generate the tree, time both ways, print a small table."""
    repeats = int(getattr(args, "repeats", 3) or 3)
    small_files = int(getattr(args, "small_files", 20_000) or 20_000)
    if shutil.which("zstd") is None or shutil.which("tar") is None:
        print("snapshot bench: needs the tar and zstd commands (apt-get install zstd)")
        return
    base = Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir=getattr(args, "dir", None)))
    try:
        ws = base / "workspace"
        ws.mkdir()
        t0 = time.perf_counter()
        data_bytes = generate_workspace(ws, small_files=small_files)
        print(
            f"workspace: {data_bytes / _MB:.0f} MB in {small_files:,} small files + 4 large "
            f"(generated in {time.perf_counter() - t0:.1f} s), {os.cpu_count()} CPUs"
        )
        store = LocalSnapshotStore(base / "store")
        cli_archive = base / "cli.tar.zst"
        # Every restore goes to a fresh directory: deleting the previous 20,000 files just
        # before a timed run makes file creation pay for the filesystem's cleanup (measured:
        # over 10x slower on this VM), which says nothing about either tool.
        targets = iter(base / f"restored-{n}" for n in range(1_000))
        target = base / "restored"

        def next_target() -> None:
            nonlocal target
            target = next(targets)

        def cli_save() -> None:
            cli_archive.unlink(missing_ok=True)
            subprocess.run(
                ["tar", "-I", "zstd -T0 -3", "-cf", str(cli_archive), "-C", str(ws), "."],
                check=True,
            )

        def cli_restore() -> None:
            target.mkdir()
            subprocess.run(
                ["tar", "-I", "zstd -T0", "-xf", str(cli_archive), "-C", str(target)], check=True
            )

        def store_save() -> None:
            asyncio.run(store.save(ws, "bench"))

        def store_restore() -> None:
            asyncio.run(store.restore("local://snapshots/bench.tar.zst", target))

        def cli_save_synced() -> None:
            cli_save()
            os.sync()

        def cli_restore_synced() -> None:
            cli_restore()
            os.sync()

        _time(cli_save)  # warm the page cache for both sides
        os.sync()
        # Interleaved, so load from elsewhere on the host hits both sides alike.
        runs: dict[str, list[float]] = {name: [] for name in _ROWS}
        steps: dict[str, tuple[Callable[[], None], Callable[[], object]]] = {
            "cli snapshot": (os.sync, cli_save),
            "cli snapshot+sync": (os.sync, cli_save_synced),
            "store snapshot": (os.sync, store_save),
            "cli restore": (next_target, cli_restore),
            "cli restore+sync": (next_target, cli_restore_synced),
            "store restore": (next_target, store_restore),
        }
        for _ in range(repeats):
            for name, (prepare, fn) in steps.items():
                prepare()
                os.sync()
                runs[name].append(_time(fn))
        results = {name: statistics.median(times) for name, times in runs.items()}
        cli_size = cli_archive.stat().st_size
        store_size = (base / "store" / "bench.tar.zst").stat().st_size
        print(f"{'':16}{'seconds':>9}{'MB/s':>9}{'archive MB':>12}{'ratio':>7}")
        for name, secs in results.items():
            size = cli_size if name.startswith("cli") else store_size
            print(
                f"{name:16}{secs:9.2f}{data_bytes / _MB / secs:9.0f}"
                f"{size / _MB:12.1f}{data_bytes / size:7.2f}"
            )
        for op in ("snapshot", "restore"):
            speed = results[f"cli {op}"] / results[f"store {op}"]
            synced = results[f"cli {op}+sync"] / results[f"store {op}"]
            verdict = "ok" if speed >= 0.8 else "BELOW TARGET"
            print(
                f"store/cli speed, {op}: {speed:.2f}x (target >= 0.8x) {verdict}; "
                f"vs cli+sync: {synced:.2f}x"
            )
        print(
            "The store fsyncs (snapshot: archive + directory, then re-reads it to verify; "
            "restore: syncfs before the swap); plain CLI rows do not, '+sync' rows add os.sync()."
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--dir", default=None, help="where to build the tree (default: $TMPDIR)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(_parse(sys.argv[1:]))
