"""Pull requests on a forge, behind one small interface (ADR 13).

The routes and the auto-PR code speak :class:`Forge`; :class:`~.github.GitHubForge` is the one
implementation (GitHub's REST API, or any forge that speaks it, at ``forge_api_url``). A forge's
refusals become the API's errors here, once, with messages a user can act on; the token is in
none of them (it is neither echoed by a forge nor put into a message by this code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from agent_sessions.exceptions import AgentSessionsError, Conflict, NotFound, UpstreamError

__all__ = [
    "REFUSED",
    "Checks",
    "Forge",
    "MergeMethod",
    "MergeResult",
    "PrState",
    "PullRequest",
    "RepoRef",
    "forge_error",
    "pull_request_missing",
    "repository_missing",
]

PrState = Literal["open", "closed", "merged"]
MergeMethod = Literal["merge", "squash", "rebase"]

REFUSED = "The forge refused the token: set a valid one for the account (or the operator's)"

# GitHub's rules for owner and repository names; anything else would be a path of its own in
# the API's URLs (``/repos/{owner}/{repo}/…`` is built by string formatting).
_NAME = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class RepoRef:
    owner: str
    name: str

    def __post_init__(self) -> None:
        if not (_NAME.match(self.owner) and _NAME.match(self.name)):
            raise Conflict(f"Not a repository name the forge accepts: {self.owner}/{self.name}")

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class Checks:
    """The head commit's check runs and commit statuses, counted together."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    pending: int = 0
    failing: tuple[str, ...] = ()
    """Names of the failed ones (for a merge refusal's message)."""


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    """The pull request's web page."""
    title: str
    state: PrState
    draft: bool
    mergeable: bool | None
    """None while the forge is still computing it."""
    mergeable_state: str | None
    """GitHub's ``mergeable_state``: clean, dirty (conflicts), blocked (required checks or
    reviews), behind, unstable (non-required checks failing), draft, unknown."""
    head: str
    base: str
    head_sha: str
    checks: Checks | None = None


@dataclass(frozen=True)
class MergeResult:
    sha: str
    message: str


class Forge(Protocol):
    """What the pull-request routes need of a forge, for one token."""

    async def default_branch(self, repo: RepoRef) -> str: ...

    async def create_pull_request(
        self, repo: RepoRef, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest: ...

    async def get_pull_request(
        self, repo: RepoRef, number: int, *, with_checks: bool = True
    ) -> PullRequest: ...

    async def find_open_pull_request(self, repo: RepoRef, head: str) -> PullRequest | None:
        """The open pull request whose head is ``head`` (a branch of ``repo`` itself)."""
        ...

    async def merge(self, repo: RepoRef, number: int, method: MergeMethod) -> MergeResult: ...

    async def close(self, repo: RepoRef, number: int) -> PullRequest: ...

    async def checks(self, repo: RepoRef, sha: str) -> Checks | None:
        """Commit ``sha``'s checks, counted; None when the token may not read them."""
        ...


def forge_error(
    status: int | None,
    message: str,
    *,
    not_found: AgentSessionsError,
    timeout: bool = False,
) -> AgentSessionsError:
    """The API's error for a forge's answer (``status`` None: no answer at all).

    401 and 403 say the token was refused (GitHub's 403 is also "this token lacks the
    permission"); 404 is ``not_found`` (a 404 for what the route names, a 409 for the session's
    repository); 405, 409 and 422 are conflicts carrying the forge's own words; anything else,
    and no answer, is the forge failing (502, 504 on timeout).
    """
    if status is None:
        if timeout:
            return UpstreamError("The forge did not answer in time", timeout=True)
        return UpstreamError(f"The forge could not be reached: {message}")
    if status in (401, 403):
        return UpstreamError(REFUSED)
    if status == 404:
        return not_found
    if status in (405, 409, 422):
        return Conflict(f"The forge refused: {message}")
    if status == 429:
        return UpstreamError("The forge's rate limit is reached; try again later")
    return UpstreamError(f"The forge failed ({status}): {message}")


def repository_missing(repo: RepoRef) -> Conflict:
    return Conflict(f"The repository {repo} is not on the forge (or the token cannot see it)")


def pull_request_missing(repo: RepoRef, number: int) -> NotFound:
    return NotFound(f"Pull request #{number} is not on the forge ({repo})")
