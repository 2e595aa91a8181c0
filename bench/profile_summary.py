"""Where a server's CPU goes, from a ``py-spy record --format raw --threads`` profile.

``bench/capacity.py --profile-n 50`` writes one (CPU samples only). Prints the share of samples
by thread, the top self-time functions, and inclusive shares by subsystem (a sample counts in
every subsystem any frame of its stack belongs to, so these overlap), then the top inclusive
frames; ``--under PATTERN`` breaks down what runs below the first frame matching PATTERN.

    .venv/bin/python bench/profile_summary.py /tmp/capacity-sqlite-1000-n50.txt [--top 25]
        [--under 'Handle._run' --depth 2]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

SUBSYSTEMS = (
    ("DBOS write_stream (with its commit)", r"write_stream"),
    ("DBOS read_stream", r"read_stream"),
    ("DBOS step results (record_operation_result)", r"record_operation_result"),
    ("DBOS, all", r"dbos/"),
    ("SQLAlchemy, all", r"sqlalchemy/"),
    ("sqlite3/psycopg commit (do_commit)", r"do_commit"),
    ("statement execution (do_execute)", r"do_execute"),
    ("app database writes (Database._write_call)", r"Database\._write_call"),
    ("pydantic-ai", r"pydantic_ai/"),
    ("VercelAIEventStream", r"vercel_ai"),
    ("openai SDK / httpx to the model", r"openai/|httpx/|httpcore/"),
    ("HTTP serving (run_asgi)", r"run_asgi"),
    ("json", r"json/"),
    ("ChunkSink (agent/sink.py)", r"agent/sink\.py"),
    ("the run's stream: log, readers (agent/stream.py)", r"agent/stream\.py"),
    ("stream group commit (agent/group_commit.py)", r"agent/group_commit\.py"),
    ("Turns (agent/service.py)", r"agent/service\.py"),
    ("LiveModel (agent/live.py)", r"agent/live\.py"),
    ("turn workflow (agent/turn.py)", r"agent/turn\.py"),
    ("sandbox commands (spawn, pipes, waitpid)", r"subprocess|unix_events|base_subprocess"),
    ("thread pool work items (to_thread / run_in_executor)", r"concurrent/futures/thread\.py"),
    ("AnyIO worker threads (to_thread)", r"AnyIO worker thread"),
    ("event loop callbacks (Handle._run)", r"Handle\._run"),
)


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    """``name (package/file.py:12)`` → ``name [package/file.py]``."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    return f"{m.group(1)} [{m.group(2)}]" if m else frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--under", help="break down what runs below this frame (regex)")
    parser.add_argument("--depth", type=int, default=1)
    args = parser.parse_args()
    stacks = load(args.profile)
    total = sum(n for _, n in stacks) or 1

    def show(title: str, counts: Counter[str] | list[tuple[str, int]]) -> None:
        rows = counts.most_common(args.top) if isinstance(counts, Counter) else counts
        print(f"\n-- {title}")
        for name, n in rows:
            print(f"{n / total * 100:5.1f}%  {name}")

    print(f"{total} samples")
    if args.under:
        rx = re.compile(args.under)
        below: Counter[str] = Counter()
        for frames, n in stacks:
            for i, f in enumerate(frames):
                if rx.search(f):
                    below[" > ".join(short(g) for g in frames[i + 1 : i + 1 + args.depth])] += n
                    break
        show(f"below {args.under}", below)
        return
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        threads[re.sub(r"[-_]?\d+$", "", re.sub(r"^thread \(\d+\): ", "", frames[0]))] += n
        own[short(frames[-1])] += n
        for name in {short(f) for f in frames[1:]}:
            inclusive[name] += n
    show("by thread", threads)
    show("self time", own)
    subsystems = [
        (name, sum(n for frames, n in stacks if any(re.search(p, f) for f in frames)))
        for name, p in SUBSYSTEMS
    ]
    show("inclusive, by subsystem (overlapping)", subsystems)
    show("inclusive, top frames", inclusive)


if __name__ == "__main__":
    main()
