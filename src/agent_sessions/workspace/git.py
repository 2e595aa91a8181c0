"""Git in the session's sandbox: status, commit, discard (ADR 13).

Each operation is one script run by :meth:`Sandbox.exec` in the workspace root (a generated
commit message needs two: the staged diff goes out to the model between them). Git runs there
as the sandbox user, so the repository's own config, hooks and filters can do nothing the agent
could not do anyway; nothing here reaches the network or holds a credential. Output is read in
git's ``-z`` forms (NUL-separated: no quoting, no path surprises) and capped by ``exec``; paths
and messages reach the script through its environment, never through its text, and every path
follows ``--`` with literal pathspecs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent_sessions.exceptions import Conflict, InvalidInput, NotFound, UpstreamError
from agent_sessions.sandbox import ExecResult, Sandbox, UnsafePath
from agent_sessions.sandbox._openat2 import split_relative
from agent_sessions.settings import Settings
from agent_sessions.workspace import commit_message

__all__ = [
    "CommitResult",
    "GitFailed",
    "GitStatus",
    "NoRepository",
    "NothingToCommit",
    "check_path",
    "commit",
    "discard",
    "head_commit",
    "status",
]

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 120.0
"""One git script at most (a commit runs the repository's hooks)."""
STATUS_MAX_OUTPUT = 1_000_000
"""Characters of ``git status`` kept (about 8,000 changed paths); past it the counts are lower
bounds and the status says ``truncated``."""
RESERVED = (".git", ".agent-sessions")
"""Top-level names no discard may name: git's own directory and the installed skills."""

_NO_REPO, _NOTHING, _NO_PATH = 3, 4, 5  # the scripts' exit codes for what is not a failure
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true"}

_REPO = "git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 3\n"
# Every change, the installed skills aside (``.git/info/exclude`` keeps them out too).
_STAGE = """git add -A -- . ':(top,exclude).agent-sessions' || exit 1
git diff --cached --quiet && exit 4
"""
# ``status`` takes no index lock (a turn's own git may be running) and leaves the installed
# skills out, as commits do; the last record counts the commits that no remote-tracking branch
# holds (what a branch without upstream has unpushed).
_STATUS = r"""GIT_OPTIONAL_LOCKS=0 GIT_LITERAL_PATHSPECS=0 git status --porcelain=v2 --branch -z \
  --untracked-files=all -- . ':(top,exclude).agent-sessions' || exit 1
if git rev-parse -q --verify HEAD >/dev/null && [ -n "$(git remote)" ]; then
  printf '# as.unpushed %s\0' "$(git rev-list --count HEAD --not --remotes)"
fi
"""
_DIFF_FOR_MESSAGE = r"""printf '%s\0' "$(git symbolic-ref -q --short HEAD)"
git -c core.quotepath=off diff --cached --no-color --stat=120 --stat-count=200 | head -c 16000
printf '\0'
git diff --cached --no-color --no-ext-diff --no-textconv | head -c 32000
"""
_COMMIT = r"""files=$(git diff --cached --name-only -z | tr -cd '\0' | wc -c)
git -c commit.gpgsign=false commit -q -m "$AS_MESSAGE" || exit 1
printf '%s\0%s\0%s\0' "$(git rev-parse HEAD)" "$(git symbolic-ref -q --short HEAD)" "$files"
git log -1 --format=%B
"""
_DISCARD_PATH = r"""p=$AS_PATH
if git rev-parse -q --verify HEAD >/dev/null && git cat-file -e "HEAD:$p" 2>/dev/null; then
  git restore --source=HEAD --staged --worktree -- "$p" || exit 1
elif git ls-files --error-unmatch -- "$p" >/dev/null 2>&1 \
    || [ -n "$(git ls-files --others --exclude-standard -- "$p")" ]; then
  git rm -r -q --cached --ignore-unmatch -- "$p" >/dev/null || exit 1
  git clean -f -d -q -- "$p" || exit 1
else
  exit 5
fi
"""
_DISCARD_ALL = r"""if git rev-parse -q --verify HEAD >/dev/null; then
  git reset -q --hard HEAD || exit 1
else
  git rm -r -q --cached --ignore-unmatch -- . >/dev/null || exit 1
fi
git clean -f -d -q -e /.agent-sessions/ || exit 1
"""
_HEAD = r"""git rev-parse -q --verify HEAD >/dev/null || exit 4
printf '%s\0%s\0' "$(git rev-parse HEAD)" "$(git symbolic-ref -q --short HEAD)"
git log -1 --format=%B
"""


class NoRepository(Conflict):
    def __init__(self) -> None:
        super().__init__("The workspace has no git repository")


class NothingToCommit(Conflict):
    def __init__(self) -> None:
        super().__init__("Nothing to commit")


class GitFailed(Conflict):
    """Git refused (a hook failed, a lock is held, the repository is broken): its message."""


@dataclass(frozen=True)
class GitStatus:
    branch: str | None
    """None when HEAD is detached."""
    head_sha: str | None
    """None before the first commit."""
    detached: bool
    upstream: str | None
    ahead: int
    behind: int
    staged: int
    unstaged: int
    untracked: int
    conflicted: int
    unpushed: int
    """Commits of HEAD that no remote-tracking branch holds (0 without a remote)."""
    truncated: bool

    @property
    def has_uncommitted_changes(self) -> bool:
        return self.staged + self.unstaged + self.untracked + self.conflicted > 0

    @property
    def has_unpushed_commits(self) -> bool:
        return self.ahead > 0 if self.upstream is not None else self.unpushed > 0


@dataclass(frozen=True)
class CommitResult:
    commit_sha: str
    message: str
    branch: str | None
    files_changed: int


@dataclass(frozen=True)
class Identity:
    """Who commits: author and committer alike, through the environment (no repo config)."""

    name: str
    email: str

    @classmethod
    def of(cls, settings: Settings) -> Identity:
        return cls(settings.git_author_name, settings.git_author_email)

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": self.email,
        }  # fmt: skip


async def _git(
    sandbox: Sandbox,
    what: str,
    script: str,
    env: dict[str, str] | None = None,
    max_output: int = 100_000,
) -> ExecResult:
    """Run one script; a missing repository is :class:`NoRepository`, a timeout a 504, any
    other exit code but the scripts' own (see ``_NOTHING``, ``_NO_PATH``) :class:`GitFailed`."""
    result = await sandbox.exec(
        _REPO + script, env={**_ENV, **(env or {})}, timeout=TIMEOUT_SECONDS,
        max_output=max_output,
    )  # fmt: skip
    if result.timed_out:
        raise UpstreamError(f"git {what} took longer than {TIMEOUT_SECONDS:.0f} s", timeout=True)
    if result.exit_code == _NO_REPO:
        raise NoRepository()
    if result.exit_code not in (0, _NOTHING, _NO_PATH):
        detail = " ".join(result.stderr.split())[-500:] or f"exit code {result.exit_code}"
        raise GitFailed(f"git {what} failed: {detail}")
    return result


# --- status --------------------------------------------------------------------------------------


async def status(sandbox: Sandbox) -> GitStatus:
    """Branch, upstream, ahead/behind and change counts of the workspace's repository."""
    result = await _git(sandbox, "status", _STATUS, max_output=STATUS_MAX_OUTPUT)
    return parse_status(result.stdout, truncated=result.truncated)


def parse_status(out: str, *, truncated: bool = False) -> GitStatus:
    """``git status --porcelain=v2 --branch -z`` (plus our ``# as.unpushed`` record).

    Renames and copies (``2``) carry their source path as one more record, skipped here. A
    truncated output lost records in its middle: what survives is counted, tolerantly.
    """
    head = {"oid": None, "head": None, "upstream": None, "ab": None, "unpushed": "0"}
    staged = unstaged = untracked = conflicted = 0
    records = out.split("\0")
    i = 0
    while i < len(records):
        record = records[i]
        i += 1
        kind = record[:2]
        if kind == "# ":
            key, _, value = record[2:].partition(" ")
            name = key.removeprefix("branch.").removeprefix("as.")
            if name in head:
                head[name] = value
        elif kind in ("1 ", "2 ") and len(record) > 4:
            staged += record[2] != "."
            unstaged += record[3] != "."
            i += kind == "2 "  # the rename's source path
        elif kind == "u ":
            conflicted += 1
        elif kind == "? ":
            untracked += 1
    ahead = behind = 0
    if head["ab"]:
        try:
            a, b = head["ab"].split()
            ahead, behind = abs(int(a)), abs(int(b))
        except ValueError:
            pass
    detached = head["head"] == "(detached)"
    oid = head["oid"]
    return GitStatus(
        branch=None if detached else head["head"],
        head_sha=None if oid in (None, "(initial)") else oid,
        detached=detached,
        upstream=head["upstream"],
        ahead=ahead,
        behind=behind,
        staged=staged,
        unstaged=unstaged,
        untracked=untracked,
        conflicted=conflicted,
        unpushed=_int(head["unpushed"]),
        truncated=truncated,
    )


def _fields(out: str, n: int) -> list[str]:
    """The first ``n`` NUL-separated fields of ``out``, the last one keeping any further NULs,
    padded with empty strings."""
    fields = out.split("\0", n - 1)
    return fields + [""] * (n - len(fields))


def _int(value: str | None) -> int:
    try:
        return int((value or "0").strip())
    except ValueError:
        return 0


# --- commit --------------------------------------------------------------------------------------


async def commit(
    sandbox: Sandbox,
    settings: Settings,
    *,
    message: str | None,
    model_id: str | None = None,
    title: str | None = None,
) -> CommitResult:
    """Stage everything and commit it as the configured identity.

    Without ``message`` the staged diff goes to the model ``model_id`` for one (see
    :mod:`.commit_message`; None: the fallback), then everything is staged again and
    committed: what the agent wrote meanwhile goes in too. :class:`NothingToCommit` when the
    tree is clean.
    """
    if message is None:
        staged = await _git(sandbox, "diff", _STAGE + _DIFF_FOR_MESSAGE, max_output=60_000)
        if staged.exit_code == _NOTHING:
            raise NothingToCommit()
        _branch, stat, diff = _fields(staged.stdout, 3)
        message = await commit_message.generate(
            settings, model_id, stat=stat, diff=diff, title=title
        )
    env = {**Identity.of(settings).env(), "AS_MESSAGE": message}
    result = await _git(sandbox, "commit", _STAGE + _COMMIT, env=env)
    if result.exit_code == _NOTHING:
        raise NothingToCommit()
    sha, branch, files, body = _fields(result.stdout, 4)
    return CommitResult(
        commit_sha=sha.strip(), message=body.strip() or message, branch=branch or None,
        files_changed=_int(files),
    )  # fmt: skip


async def head_commit(sandbox: Sandbox) -> CommitResult | None:
    """HEAD's commit (``files_changed`` unknown: 0), None before the first commit."""
    result = await _git(sandbox, "log", _HEAD)
    if result.exit_code == _NOTHING:
        return None
    sha, branch, body = _fields(result.stdout, 3)
    return CommitResult(sha.strip(), body.strip(), branch or None, 0)


# --- discard -------------------------------------------------------------------------------------


def check_path(file_path: str) -> str:
    """``file_path`` as a clean workspace-relative path; 400 for an absolute path, ``..``, the
    workspace root, or a path in ``.git`` or ``.agent-sessions``."""
    try:
        parts = split_relative(file_path)
    except UnsafePath as err:
        raise InvalidInput(f"Invalid filePath: {err.message}") from None
    if not parts:
        raise InvalidInput("Invalid filePath: name a file (omit filePath to discard everything)")
    if parts[0] in RESERVED:
        raise InvalidInput(f"Invalid filePath: {parts[0]} is not part of the working tree")
    return "/".join(parts)


async def discard(sandbox: Sandbox, file_path: str | None) -> GitStatus:
    """Throw away uncommitted changes: of one path (a tracked one back to HEAD, index
    included; a new one deleted), or of everything (``reset --hard`` + ``clean -fd``, ignored
    files and the installed skills kept). Returns the status after it."""
    if file_path is None:
        script, env = _DISCARD_ALL, {"GIT_LITERAL_PATHSPECS": "1"}
    else:
        path = check_path(file_path)
        script, env = _DISCARD_PATH, {"GIT_LITERAL_PATHSPECS": "1", "AS_PATH": path}
    result = await _git(sandbox, "discard", script + _STATUS, env=env, max_output=STATUS_MAX_OUTPUT)
    if result.exit_code == _NO_PATH:
        raise NotFound(f"No change to discard at {file_path!r}")
    return parse_status(result.stdout, truncated=result.truncated)
