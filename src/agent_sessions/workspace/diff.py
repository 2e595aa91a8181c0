"""The workspace's diff: what the agent changed, against the branch it will be merged into.

One ``exec`` of one script (:data:`SCRIPT`) does it all inside the sandbox, where git runs as
the sandbox user (ADR 13): a spawn costs milliseconds, and a second round trip would cost as
much as the parsing. The script

1. copies the index to the sandbox's ``/tmp`` and, with ``GIT_INDEX_FILE`` on the copy, records
   every untracked file as intent-to-add (``git add -A -N``): the user's index is left alone,
   no object is written (but the empty blob), and untracked files show as added (renames of
   them included);
2. meanwhile, after a restore, refreshes the real index's stat data, as ``git status`` does:
   a restored workspace's inodes all changed, and every diff would re-read every file (4.6x
   slower at 20,000 files) until the agent's git refreshed it. A restore is told by
   :data:`STAMP`; the refresh costs a pass over every file, so it is not done otherwise. It is
   waited for, so that it never dies holding ``index.lock``. Then the script picks the base:
   ``git merge-base HEAD <origin's default branch>`` (``refs/remotes/origin/HEAD``), else
   ``HEAD``, else the empty tree (no commit yet);
3. runs ``git diff <base>`` once with ``--raw -p -z``: statuses and the patch come from the one
   comparison, in the same order, so the n-th patch section is the n-th file's (no header
   parsing, no race with an agent writing meanwhile); lines are counted from the hunks;
4. meanwhile lists the files marked ``linguist-generated`` (set, ``=true``; and ``=false``/
   unset, which overrule the built-in patterns), from the copied index, when there is an
   attributes file at all (most repositories have none: the lookup is then skipped), and
   prints them after the diff.

Every output is capped in the sandbox (``head -c``), and the result's end is marked, so a cut
is seen and reported as ``truncated``. Python parses the NUL-separated records, flags lock and
generated files (their hunks dropped) and binary ones, and hands hunks out under a per-file and
a total budget (``settings.diff_max_bytes``).
"""

from __future__ import annotations

import re
from typing import Any

from agent_sessions.exceptions import Conflict, UpstreamError
from agent_sessions.sandbox import Sandbox

__all__ = ["DIFF_TIMEOUT", "LOCK_FILES", "compute_diff", "is_generated", "parse_output"]

DIFF_TIMEOUT = 60.0
"""Seconds the script may run (a stat of every file plus the changed files' diffs)."""
LISTED_MAX = 256 << 10
"""Bytes of each list of attribute-marked paths kept (past it, some may go unflagged)."""
META_ROOM = 16 << 20
"""Bytes of the stream beyond the patch budget, for the records (~100 bytes a file) and the
hunks that are dropped (generated files, files over the per-file cap)."""
PER_FILE_SHARE = 4
"""A file's hunks may take at most this fraction (1/n) of the total patch budget."""
STAMP = "agent-sessions-diff.stamp"
"""A file in ``.git`` holding its own inode number: when they differ, the workspace was
restored from a snapshot (every inode changed), so the index's stat data is stale."""
NOT_A_REPO = 64
"""The script's exit status when the workspace is not a git repository."""

LOCK_FILES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lock",
    "bun.lockb", "deno.lock", "Cargo.lock", "poetry.lock", "uv.lock", "Pipfile.lock", "pdm.lock",
    "Gemfile.lock", "composer.lock", "go.sum", "go.work.sum", "mix.lock", "pubspec.lock",
    "Podfile.lock", "Package.resolved", "flake.lock", "packages.lock.json", "gradle.lockfile",
    "conan.lock", "shard.lock", "Manifest.toml", "cabal.project.freeze",
})  # fmt: skip
"""Lock files, by name: written by package managers, reviewed by nobody."""
_GENERATED_DIRS = frozenset({"dist", "node_modules", "__generated__", ".next", ".nuxt"})
_GENERATED_SUFFIXES = (
    ".min.js", ".min.mjs", ".min.css", ".js.map", ".mjs.map", ".css.map",
    ".pb.go", ".pb.cc", ".pb.h", "_pb2.py", "_pb2_grpc.py", "_pb2.pyi",
)  # fmt: skip

_STATUS = {"A": "added", "D": "deleted", "R": "renamed", "C": "added"}
_END = re.compile(r"\x00\x00end (\d+)\x00\Z")
_LISTS = "\0/lists\0"

SCRIPT = r"""
set -u
export GIT_OPTIONAL_LOCKS=0 GIT_TERMINAL_PROMPT=0 LC_ALL=C GIT_CONFIG_COUNT=2 \
  GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0=false \
  GIT_CONFIG_KEY_1=core.quotePath GIT_CONFIG_VALUE_1=false
up=${PWD%/*}; export GIT_CEILING_DIRECTORIES=${up:-/}
nl='
'
info=$(git rev-parse --is-inside-work-tree --git-path index --git-path info/attributes \
  --git-path __STAMP__ 2>/dev/null)
case $info in "true$nl"*) ;; *) echo 'not a git repository' >&2; exit 64 ;; esac
info=${info#*$nl}; idx=${info%%$nl*}; info=${info#*$nl}
repo_attributes=${info%%$nl*}; stamp=${info#*$nl}
T=$(mktemp -d) || exit 70
if [ -f "$idx" ]; then cp -p "$idx" "$T/index" || exit 70; fi  # -p: racy-git needs its mtime
trap 'wait; rm -rf "$T"' EXIT
stamped=
{ read -r stamped < "$stamp"; } 2>/dev/null
if [ -z "$stamped" ] || [ "$stamped" != "$(stat -c %i "$stamp" 2>/dev/null)" ]; then
  { git update-index -q --refresh && : > "$stamp" && stat -c %i "$stamp" > "$stamp"; } \
    >/dev/null 2>&1 &
fi
export GIT_INDEX_FILE="$T/index"
git add -A -N >/dev/null 2>"$T/err" &
added=$!
if head=$(git rev-parse -q --verify 'HEAD^{commit}'); then
  base=$head ref=HEAD
  if up=$(git symbolic-ref -q refs/remotes/origin/HEAD) \
     && mb=$(git merge-base HEAD "$up" 2>/dev/null); then
    base=$mb ref=${up#refs/remotes/}
  fi
else
  base=$(git hash-object -t tree /dev/null) ref=
fi
wait "$added" || { cat "$T/err" >&2; exit 65; }
global_attributes=${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/git/attributes
{
  if [ -f "$repo_attributes" ] || [ -f "$global_attributes" ] \
     || git config --get core.attributesFile >/dev/null \
     || [ -n "$(git ls-files -- ':(glob)**/.gitattributes' | head -c 1)" ]; then
    git ls-files -z -- ':(attr:linguist-generated)' ':(attr:linguist-generated=true)' \
      | head -c __LISTED__ > "$T/marked"
    git ls-files -z -- ':(attr:linguist-generated=false)' ':(attr:-linguist-generated)' \
      | head -c __LISTED__ > "$T/unmarked"
  fi
} 2>/dev/null &
listed=$!
printf 'agent-sessions-diff 1\0%s\0%s\0' "$ref" "$base"
{
  git diff --raw -p -z -M -U3 --no-color --no-ext-diff --no-textconv --no-relative \
    --src-prefix=a/ --dst-prefix=b/ -O/dev/null --ignore-submodules=dirty "$base" 2>"$T/err"
  printf '\0\0end %s\0' "$?"
} | head -c __STREAM__
wait "$listed"
printf '\0/lists\0'
if [ -s "$T/marked" ]; then cat "$T/marked"; fi; printf '\0/\0'
if [ -s "$T/unmarked" ]; then cat "$T/unmarked"; fi; printf '\0/\0'
if [ -s "$T/err" ]; then cat "$T/err" >&2; fi
"""


def _script(max_bytes: int) -> tuple[str, int]:
    """The script with its caps filled in, and the stdout it can produce at most."""
    stream = META_ROOM + PER_FILE_SHARE * max_bytes
    text = SCRIPT.replace("__LISTED__", str(LISTED_MAX)).replace("__STREAM__", str(stream))
    text = text.replace("__STAMP__", STAMP)
    return text, stream + 2 * LISTED_MAX + 4096


async def compute_diff(sandbox: Sandbox, max_bytes: int) -> dict[str, Any]:
    """The workspace's diff as the wire object (camelCase, ready for JSON and the cache).

    :class:`Conflict` (409) when the workspace is not a git repository; :class:`UpstreamError`
    (502/504) when git fails or runs out of time."""
    script, max_output = _script(max_bytes)
    result = await sandbox.exec(script, timeout=DIFF_TIMEOUT, max_output=max_output)
    if result.timed_out:
        raise UpstreamError("Computing the diff timed out", timeout=True)
    if result.exit_code == NOT_A_REPO:
        raise Conflict("The workspace is not a git repository")
    if result.exit_code != 0:
        raise UpstreamError(f"git failed: {_last_line(result.stderr)}")
    return parse_output(result.stdout, result.stderr, max_bytes)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


def is_generated(path: str) -> bool:
    """Lock files and the usual build outputs, by path (``linguist-generated`` decides first)."""
    parent, _, name = path.rpartition("/")
    if name in LOCK_FILES or name.endswith(_GENERATED_SUFFIXES):
        return True
    return bool(parent) and not _GENERATED_DIRS.isdisjoint(parent.split("/"))


def _list(text: str) -> tuple[set[str], str]:
    """A list of paths the script printed, and what follows it. Each list ends with the token
    ``/``, which no path can be; a list cut by its cap ends in a partial path, harmlessly."""
    end = text.find("\0/\0")
    if end < 0:
        raise UpstreamError("unexpected output from the diff script (lists)")
    return {p for p in text[:end].split("\0") if p}, text[end + 3 :]


def parse_output(stdout: str, stderr: str, max_bytes: int) -> dict[str, Any]:
    """The script's output → the diff object (see the module's docstring for the layout)."""
    head = stdout.split("\0", 3)
    if len(head) < 4 or head[0] != "agent-sessions-diff 1":
        raise UpstreamError(f"unexpected output from the diff script: {_last_line(stderr)}")
    base_ref, base_commit, rest = head[1] or None, head[2] or None, head[3]
    cut = rest.rfind(_LISTS)  # a token no path can be, after the (capped) stream
    if cut < 0:
        raise UpstreamError(f"unexpected output from the diff script: {_last_line(stderr)}")
    stream = rest[:cut]
    marked, rest = _list(rest[cut + len(_LISTS) :])
    unmarked, _ = _list(rest)

    end = _END.search(stream, max(0, len(stream) - 32))  # only the tail can hold it
    complete = end is not None
    if end is not None:
        if end.group(1) != "0":
            raise UpstreamError(f"git diff failed: {_last_line(stderr)}")
        stream = stream[: end.start()]
    split = stream.find("\0\0")
    if split < 0:  # no change at all, or the stream was cut inside the records
        split = len(stream)
    records = _records(stream[: split + 1])
    starts = _section_starts(stream, split + 2, complete)
    files, cut = _files(records, stream, starts, marked, unmarked, max_bytes)
    truncated = cut or not complete
    return {
        "files": files,
        "summary": {
            "totalFiles": len(files),
            "totalAdditions": sum(f["additions"] for f in files),
            "totalDeletions": sum(f["deletions"] for f in files),
        },
        "baseRef": base_ref,
        "baseCommit": base_commit,
        "truncated": truncated,
    }


def _records(meta: str) -> list[tuple[str, str | None, str]]:
    """The ``--raw -z`` records as (path, old path, status letter): ``:<modes> <shas>
    <status>``, then one path, or two for a rename. Read by position, so that a path looking
    like a record (``:x``) is still a path; a stream cut inside them loses the last one."""
    tokens = meta.split("\0")
    tokens.pop()  # after the last NUL: nothing, or a record cut short
    records: list[tuple[str, str | None, str]] = []
    i, n = 0, len(tokens)
    while i < n and tokens[i].startswith(":"):
        letter = tokens[i][-1] if tokens[i][-1].isalpha() else tokens[i].rsplit(" ", 1)[-1][:1]
        if letter in "RC":
            if i + 2 >= n:
                break
            records.append((tokens[i + 2], tokens[i + 1], letter))
            i += 3
        else:
            if i + 1 >= n:
                break
            records.append((tokens[i + 1], None, letter))
            i += 2
    return records


def _section_starts(stream: str, at: int, complete: bool) -> list[int]:
    """Offsets of the patch's sections in ``stream`` (the patch starts at ``at``), one per
    file in the records' order, and the end of the last one. A header (``diff --git``) is
    always at a line's start; a hunk's lines start with `` ``, ``+``, ``-`` or ``\\``, so no
    content line can look like one. A cut stream's last section may be short: it is left out.
    """
    if at >= len(stream):
        return []
    starts = [at]
    find = stream.find
    pos = find("\ndiff --git ", at)
    while pos >= 0:
        starts.append(pos + 1)
        pos = find("\ndiff --git ", pos + 1)
    if complete:
        starts.append(len(stream))
    return starts


def _files(
    records: list[tuple[str, str | None, str]],
    stream: str,
    starts: list[int],
    marked: set[str],
    unmarked: set[str],
    max_bytes: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The files: counted from their sections, flagged binary and generated, the others with
    their section within the budgets; and whether some file lost its hunks to a budget or a
    cut stream.

    The counts come from the hunks (lines starting with ``+``/``-`` after the first ``@@``),
    not from ``--numstat``: git would run its line diff a second time for them."""
    per_file = max_bytes // PER_FILE_SHARE
    left = max_bytes
    truncated = False
    sections = len(starts) - 1
    files = []
    for index, (path, old, letter) in enumerate(records):
        generated = path in marked or (path not in unmarked and is_generated(path))
        additions = deletions = 0
        binary = False
        diff = None
        if index < sections:
            a, b = starts[index], starts[index + 1]
            hunks = stream.find("\n@@", a, b)
            if hunks >= 0:
                additions = stream.count("\n+", hunks, b)
                deletions = stream.count("\n-", hunks, b)
            else:
                binary = stream.find("\nBinary files ", a, b) >= 0
            if not (generated or binary):
                if b - a > per_file or b - a > left:  # characters: at most the bytes
                    truncated = True
                else:
                    text = stream[a:b]
                    size = b - a if text.isascii() else len(text.encode())
                    if size > per_file or size > left:
                        truncated = True
                    else:
                        diff, left = text, left - size
        else:
            truncated = True
        files.append({
            "path": path, "oldPath": old, "status": _STATUS.get(letter, "modified"),
            "additions": additions, "deletions": deletions, "binary": binary,
            "generated": generated, "diff": diff,
        })  # fmt: skip
    return files, truncated
