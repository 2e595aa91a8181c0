"""The workspace generator ``bench/lifecycle.py`` runs *inside* a sandbox (``python3 -c``).

It runs inside rather than writing from the host so that the files belong to the sandbox uid
and pass through the same path an agent's commands would. The mix imitates a checked-out
project: ~30 % of the bytes in many small source-like files (lognormal sizes, median ~2 KB, a
tenth random "binary assets"), the rest in four large files (two text-like, one random, one
half/half), so compression and per-file costs both show. Deterministic for a given seed.
"""

from __future__ import annotations

SCRIPT = r"""
import os, random, sys
total, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
MB = 1 << 20
words = ("def return self import from class async await for in if else while try except "
         "with as yield None True False value result items data config path name request "
         "response session sandbox workspace snapshot store agent model tool stream").split()
lines, n = [], 0
while n < 2 * MB:
    line = "    " * rng.randint(0, 3) + " ".join(rng.choices(words, k=rng.randint(3, 12)))
    line += "  # %d\n" % n
    lines.append(line)
    n += len(line)
corpus = "".join(lines).encode()
small_budget, written, i = int(total * 0.3), 0, 0
while written < small_budget:
    d = "src/pkg%02d/mod%03d" % (i // 2000, i // 100)
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = max(16, min(int(rng.lognormvariate(7.6, 0.9)), 64 * 1024, small_budget - written))
    if i % 10 == 0:
        data = rng.randbytes(size)
    else:
        off = rng.randrange(0, len(corpus) - size)
        data = corpus[off:off + size]
    with open("%s/file%05d.py" % (d, i), "wb") as f:
        f.write(data)
    written += size
    i += 1
os.makedirs("assets", exist_ok=True)
rest = total - written
for name, share, kind in (("log.txt", 0.3, "text"), ("dump.sql", 0.25, "text"),
                          ("video.bin", 0.3, "random"), ("mixed.bin", 0.15, "mixed")):
    size, done = int(rest * share), 0
    with open("assets/" + name, "wb") as f:
        while done < size:
            n = min(MB, size - done)
            if kind == "text" or (kind == "mixed" and (done // MB) % 2 == 0):
                off = rng.randrange(0, len(corpus) - n)
                f.write(corpus[off:off + n])
            else:
                f.write(os.urandom(n))
            done += n
    written += size
print(i, written)
"""


def command(total_bytes: int, seed: int = 1) -> str:
    """The shell command that fills the current directory (the workspace) with the mix."""
    quoted = "'" + SCRIPT.replace("'", "'\\''") + "'"
    return f"python3 -c {quoted} {int(total_bytes)} {int(seed)}"
