"""A session's pull request: open (or reuse), read, merge, close; ``prNumber``/``prStatus``.

The session's repository (``repoOwner``/``repoName``) and ``branch`` say where; the account's
forge token (else the operator's) says who. The head branch must already be on the forge (a
push, ``POST …/git/push`` or the automatic one, put it there): the forge's "no such head" is a
409 that says so. A title or body not given is written by the session's chat model from the
branch's commits and diff (one ``exec`` in the sandbox), with a plain fallback.

:func:`open_pull_request_for` is also what the automatic pull request after the first
automatic push calls (``autoCreatePr``), with the turn's sandbox.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from agent_sessions.exceptions import AgentSessionsError, Conflict, NotFound
from agent_sessions.sandbox import Sandbox
from agent_sessions.settings import Settings
from agent_sessions.store import Database, sessions
from agent_sessions.store.models import SessionRow, utcnow
from agent_sessions.workspace import textgen
from agent_sessions.workspace.credentials import Vault
from agent_sessions.workspace.forge import (
    Forge,
    MergeMethod,
    MergeResult,
    PullRequest,
    RepoRef,
)
from agent_sessions.workspace.github import GitHubForge

__all__ = [
    "Opened",
    "Readiness",
    "SandboxSource",
    "branch_readiness",
    "close_pull_request",
    "merge_pull_request",
    "open_pull_request_for",
    "read_pull_request",
]

log = logging.getLogger(__name__)

SandboxSource = Callable[[], Awaitable[Sandbox]]
"""How to get the session's sandbox when the text must be written (only then is it asked)."""

PATCH_CHARS = 8000
"""Diff text the model sees; enough for a summary, little enough for any model's context."""
MAX_SUBJECTS = 50
TITLE_CHARS = 256  # GitHub's limit

INSTRUCTIONS = """\
You write the title and description of a pull request from its commits and diff.
Answer with the title alone on the first line (imperative mood, at most 72 characters, no
quotes, no trailing period), then a blank line, then a Markdown body with a "## Summary"
paragraph and a "## Changes" bullet list. Describe only what the commits and the diff show."""


@dataclass(frozen=True)
class Opened:
    pull_request: PullRequest
    created: bool
    """False when an open pull request for the branch already existed and is answered."""


@dataclass(frozen=True)
class _Bound:
    """A session bound to a repository and a branch, with the forge token to use."""

    session_id: str
    repo: RepoRef
    branch: str
    pr_number: int | None
    pr_status: str | None
    token: str


async def _bound(settings: Settings, db: Database, session_id: str, account_id: str) -> _Bound:
    """The owned session's binding (403/404 first, then 409 for what is missing)."""

    def read(s: Any) -> tuple[tuple[Any, ...], str | None]:
        row = sessions.get_owned(s, session_id, account_id)
        binding = (row.repo_owner, row.repo_name, row.branch, row.pr_number, row.pr_status)
        return binding, Vault(settings).token_for(s, account_id)

    (owner, name, branch, pr_number, pr_status), token = await db.read_call(read)
    if not owner or not name:
        raise Conflict(
            "The session has no repository: create it with cloneUrl, or repoOwner and repoName"
        )
    if not branch:
        raise Conflict("The session has no branch to open a pull request from")
    if token is None:
        raise Conflict(
            "No forge token: set one for the account, or the operator sets "
            "AGENT_SESSIONS_FORGE_TOKEN"
        )
    return _Bound(session_id, RepoRef(owner, name), branch, pr_number, pr_status, token)


def _forge(settings: Settings, token: str) -> GitHubForge:
    return GitHubForge(settings.forge_api_url, token)


async def _store(db: Database, bound: _Bound, number: int, status: str) -> None:
    """Record the pull request on the session (a write only when something changed)."""
    if (bound.pr_number, bound.pr_status) == (number, status):
        return

    def write(s: Any) -> None:
        row = s.get(SessionRow, bound.session_id)
        if row is not None:
            row.pr_number, row.pr_status, row.updated_at = number, status, utcnow()

    await db.write_call(write)


# --- open --------------------------------------------------------------------------------------


async def open_pull_request_for(
    settings: Settings,
    db: Database,
    session_id: str,
    account_id: str,
    *,
    title: str | None = None,
    body: str | None = None,
    draft: bool = False,
    base: str | None = None,
    sandbox: SandboxSource | None = None,
) -> Opened:
    """Open the session's pull request, or answer the open one its branch already has.

    ``base`` defaults to the repository's default branch. Without ``sandbox`` (or when it
    cannot be had) a missing title and body are written from the branch name alone.
    """
    bound = await _bound(settings, db, session_id, account_id)
    async with _forge(settings, bound.token) as forge:
        base = base or await forge.default_branch(bound.repo)
        if base == bound.branch:
            raise Conflict(_is_base(bound.branch))
        opened = await _reuse_or_create(
            settings, db, forge, bound, base, draft, title, body, sandbox
        )
        checks = await forge.checks(bound.repo, opened.pull_request.head_sha)
    await _store(db, bound, opened.pull_request.number, opened.pull_request.state)
    return replace(opened, pull_request=replace(opened.pull_request, checks=checks))


async def _reuse_or_create(
    settings: Settings,
    db: Database,
    forge: Forge,
    bound: _Bound,
    base: str,
    draft: bool,
    title: str | None,
    body: str | None,
    sandbox: SandboxSource | None,
) -> Opened:
    existing = await _existing(forge, bound)
    if existing is not None:
        return Opened(existing, False)
    if title is None or body is None:
        written = await _written(settings, db, bound, base, sandbox)
        title, body = title or written[0], body if body is not None else written[1]
    try:
        created = await forge.create_pull_request(
            bound.repo, head=bound.branch, base=base, title=title, body=body, draft=draft
        )
    except Conflict:  # one was opened meanwhile (GitHub: "already exists"), or another refusal
        existing = await forge.find_open_pull_request(bound.repo, bound.branch)
        if existing is None:
            raise
        return Opened(existing, False)
    return Opened(created, True)


async def _existing(forge: Forge, bound: _Bound) -> PullRequest | None:
    """The session's own pull request if still open on this branch, else any open one for
    the branch (made on the forge, or by an earlier call that did not get to record it)."""
    if bound.pr_number is not None:
        try:
            pr = await forge.get_pull_request(bound.repo, bound.pr_number, with_checks=False)
        except NotFound:
            pr = None
        if pr is not None and pr.state == "open" and pr.head == bound.branch:
            return pr
    return await forge.find_open_pull_request(bound.repo, bound.branch)


async def _written(
    settings: Settings, db: Database, bound: _Bound, base: str, sandbox: SandboxSource | None
) -> tuple[str, str]:
    """A title and body: the chat model's from the branch's commits and diff, else plain."""
    summary = _Summary()
    if sandbox is not None:
        try:
            summary = await _branch_summary(await sandbox(), base)
        except AgentSessionsError as err:
            log.info("no sandbox to read the branch from (%s): plain text", err.message)
    model_id = await db.read_call(
        lambda s: textgen.session_model(s, bound.session_id, settings.default_model)
    )
    answer = await textgen.write(settings, model_id, INSTRUCTIONS, summary.prompt(bound, base))
    plain_title, plain_body = summary.plain(bound, base)
    if answer is None:
        return plain_title, plain_body
    title, _, body = answer.partition("\n")
    title = title.strip().lstrip("#").strip().strip("\"'`").strip()
    title = title.removeprefix("Title:").strip()[:TITLE_CHARS]
    return title or plain_title, body.strip() or plain_body


# --- the branch, read in the sandbox -----------------------------------------------------------

_SEP = "\x1e"
# One exec: the merge-base with origin's ``base`` (if the remote branch is known), the commit
# subjects since (NUL-separated), the diffstat and the start of the patch, separated by RS.
_SUMMARY_SCRIPT = r"""
export LC_ALL=C GIT_PAGER=cat
from=""
if git rev-parse -q --verify "refs/remotes/origin/$PR_BASE^{commit}" >/dev/null 2>&1; then
  from=$(git merge-base HEAD "refs/remotes/origin/$PR_BASE" 2>/dev/null) || from=""
fi
printf '%s\036' "$from"
if [ -n "$from" ]; then
  git log -z --no-merges --format=%s -n "$PR_MAX_SUBJECTS" "$from..HEAD" -- 2>/dev/null
  printf '\036'
  git -c core.quotepath=off diff --no-color --no-ext-diff --no-textconv --stat=100 \
    "$from" HEAD -- 2>/dev/null
  printf '\036'
  git diff --no-color --no-ext-diff --no-textconv "$from" HEAD -- 2>/dev/null \
    | head -c "$PR_PATCH_BYTES"
else
  git log -z --no-merges --format=%s -n "$PR_MAX_SUBJECTS" HEAD -- 2>/dev/null
  printf '\036\036'
fi
"""


@dataclass(frozen=True)
class _Summary:
    subjects: tuple[str, ...] = ()
    stat: str = ""
    patch: str = ""

    def prompt(self, bound: _Bound, base: str) -> str:
        commits = "\n".join(f"- {s}" for s in self.subjects) or "(none known)"
        return (
            f"Repository: {bound.repo}\nBranch: {bound.branch} (into {base})\n\n"
            f"Commits:\n{commits}\n\nFiles changed:\n{self.stat or '(unknown)'}\n\n"
            f"Diff (the first {PATCH_CHARS} characters):\n{self.patch or '(unknown)'}\n"
        )

    def plain(self, bound: _Bound, base: str) -> tuple[str, str]:
        """The text without a model: the one commit's subject, else the branch's name."""
        one = len(self.subjects) == 1
        title = self.subjects[0] if one else f"Changes from {bound.branch}"
        lines = ["## Changes", ""]
        lines += [f"- {s}" for s in self.subjects] or [f"Commits of `{bound.branch}`."]
        if self.stat:
            lines += ["", "```", self.stat.rstrip(), "```"]
        return title[:TITLE_CHARS], "\n".join(lines)


async def _branch_summary(sandbox: Sandbox, base: str) -> _Summary:
    result = await sandbox.exec(
        _SUMMARY_SCRIPT,
        env={
            "PR_BASE": base,
            "PR_MAX_SUBJECTS": str(MAX_SUBJECTS),
            "PR_PATCH_BYTES": str(PATCH_CHARS),
        },
        timeout=30,
        max_output=PATCH_CHARS + 64 * 1024,
    )
    if result.exit_code != 0 or result.timed_out:
        return _Summary()
    _from, _, rest = result.stdout.partition(_SEP)
    subjects, _, rest = rest.partition(_SEP)
    stat, _, patch = rest.partition(_SEP)
    return _Summary(
        tuple(s.strip() for s in subjects.split("\0") if s.strip())[:MAX_SUBJECTS],
        stat.strip()[-4000:],
        patch[:PATCH_CHARS],
    )


# --- whether the branch can have a pull request (the automatic one asks first) ---------------

_READINESS_SCRIPT = r"""
export LC_ALL=C
git rev-parse --git-dir >/dev/null 2>&1 || { printf 'norepo\0'; exit 0; }
ref=$(git symbolic-ref -q HEAD) || { printf 'detached\0'; exit 0; }
head=$(git rev-parse -q --verify 'HEAD^{commit}') || { printf 'unborn\0'; exit 0; }
branch=${ref#refs/heads/}
base=$PR_BASE
if [ -z "$base" ]; then
  base=$(git symbolic-ref -q refs/remotes/origin/HEAD) && base=${base#refs/remotes/origin/}
fi
there=$(git rev-parse -q --verify "refs/remotes/origin/$branch^{commit}") || there=""
ahead=""
if [ -n "$base" ] && from=$(git rev-parse -q --verify "refs/remotes/origin/$base^{commit}"); then
  ahead=$(git rev-list --count "$from..$head")
fi
pushed=0; [ "$there" = "$head" ] && pushed=1
printf 'ok\0%s\0%s\0%s\0%s\0' "$branch" "$base" "$pushed" "$ahead"
"""


@dataclass(frozen=True)
class Readiness:
    """The sandbox's branch as a pull request would see it (read in one ``exec``)."""

    branch: str | None
    """None: HEAD is detached, unborn, or there is no repository."""
    base: str | None
    """The base asked for, else origin's default branch; None when unknown."""
    pushed: bool
    """``origin/<branch>`` is HEAD: the forge has the branch as it is here."""
    ahead: int | None
    """Commits of HEAD that ``origin/<base>`` lacks; None when the base is not known here."""

    def problem(self) -> str | None:
        """Why no pull request can be opened from the branch now, or None."""
        if self.branch is None:
            return "HEAD is not on a branch: there is no branch to open a pull request from"
        if self.branch == self.base:
            return _is_base(self.branch)
        if not self.pushed:
            return f"The branch {self.branch} is not on the remote as it is here: push it first"
        if self.ahead == 0:
            return f"The branch {self.branch} has no commits that {self.base} does not have"
        return None


def _is_base(branch: str) -> str:
    return (
        f"The session's branch {branch} is the base branch: a pull request needs another "
        "branch (create the session with isNewBranch)"
    )


async def branch_readiness(sandbox: Sandbox, base: str | None) -> Readiness:
    """Read the branch, its base and whether it is pushed (``base``: None for origin's
    default branch). A failure to read says "not on a branch" rather than raising."""
    result = await sandbox.exec(
        _READINESS_SCRIPT, env={"PR_BASE": base or ""}, timeout=30, max_output=4096
    )
    fields = result.stdout.split("\0")
    if result.exit_code != 0 or result.timed_out or fields[0] != "ok" or len(fields) < 5:
        return Readiness(None, base, False, None)
    branch, found_base, pushed, ahead = fields[1:5]
    return Readiness(
        branch, found_base or None, pushed == "1", int(ahead) if ahead.isdigit() else None
    )


# --- read, merge, close ------------------------------------------------------------------------


async def _numbered(settings: Settings, db: Database, session_id: str, account_id: str) -> _Bound:
    bound = await _bound(settings, db, session_id, account_id)
    if bound.pr_number is None:
        raise NotFound("The session has no pull request")
    return bound


async def read_pull_request(
    settings: Settings, db: Database, session_id: str, account_id: str
) -> PullRequest:
    """The session's pull request as the forge has it now (``prStatus`` follows)."""
    bound = await _numbered(settings, db, session_id, account_id)
    assert bound.pr_number is not None
    async with _forge(settings, bound.token) as forge:
        pr = await forge.get_pull_request(bound.repo, bound.pr_number)
    await _store(db, bound, pr.number, pr.state)
    return pr


async def merge_pull_request(
    settings: Settings, db: Database, session_id: str, account_id: str, method: MergeMethod
) -> tuple[PullRequest, MergeResult]:
    """Merge the session's pull request; 409 with the reason when it cannot be merged."""
    bound = await _numbered(settings, db, session_id, account_id)
    assert bound.pr_number is not None
    async with _forge(settings, bound.token) as forge:
        pr = await forge.get_pull_request(bound.repo, bound.pr_number)
        if pr.state != "open":
            await _store(db, bound, pr.number, pr.state)
            raise Conflict(f"Pull request #{pr.number} is {pr.state}: there is nothing to merge")
        _require_mergeable(pr)
        result = await forge.merge(bound.repo, pr.number, method)
        merged = await forge.get_pull_request(bound.repo, pr.number)
    await _store(db, bound, merged.number, "merged")
    return replace(merged, state="merged"), result


def _require_mergeable(pr: PullRequest) -> None:
    """409 for what GitHub's ``mergeable``/``mergeable_state`` say blocks a merge. Unknown
    mergeability (still being computed) is left to the forge, which refuses if it must."""
    if pr.draft or pr.mergeable_state == "draft":
        raise Conflict(f"Pull request #{pr.number} is a draft: mark it ready for review first")
    if pr.mergeable is False or pr.mergeable_state == "dirty":
        raise Conflict(f"Pull request #{pr.number} has conflicts with {pr.base}")
    if pr.mergeable_state == "blocked":
        failing = pr.checks.failing if pr.checks is not None else ()
        why = f" (failing: {', '.join(failing)})" if failing else ""
        raise Conflict(
            f"Pull request #{pr.number} is blocked by {pr.base}'s rules: required checks"
            f"{why} or reviews"
        )


async def close_pull_request(
    settings: Settings, db: Database, session_id: str, account_id: str
) -> PullRequest:
    """Close the session's pull request (a closed one stays closed; a merged one is a 409)."""
    bound = await _numbered(settings, db, session_id, account_id)
    assert bound.pr_number is not None
    async with _forge(settings, bound.token) as forge:
        pr = await forge.get_pull_request(bound.repo, bound.pr_number, with_checks=False)
        if pr.state == "merged":
            await _store(db, bound, pr.number, "merged")
            raise Conflict(f"Pull request #{pr.number} is merged: it cannot be closed")
        if pr.state == "open":
            pr = await forge.close(bound.repo, pr.number)
        checks = await forge.checks(bound.repo, pr.head_sha)
    await _store(db, bound, pr.number, pr.state)
    return replace(pr, checks=checks)
