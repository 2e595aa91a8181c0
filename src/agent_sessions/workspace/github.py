"""The :class:`~.forge.Forge` of GitHub's REST API, through githubkit.

One :class:`GitHubForge` per token and request: used as ``async with``, it holds one HTTP
client (connections reused by the few calls a route makes) and closes it at the end. githubkit
is imported on first use (a quarter of a second: not at start-up). Its HTTP cache and its
automatic retries are off: a pull request's state must be the forge's current one, and a
forge that fails answers the user now (502) rather than after a minute of back-off.

The token is only in githubkit's auth flow, which sets the ``Authorization`` header; no error
message, log line or exception made here carries it (githubkit's own log lines name the
method and URL only, and its exceptions are not chained into ours).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from agent_sessions.exceptions import AgentSessionsError, Conflict
from agent_sessions.workspace.forge import (
    Checks,
    MergeMethod,
    MergeResult,
    PrState,
    PullRequest,
    RepoRef,
    forge_error,
    pull_request_missing,
    repository_missing,
)

if TYPE_CHECKING:
    from githubkit import GitHub, TokenAuthStrategy

__all__ = ["FORGE_TIMEOUT_SECONDS", "GitHubForge"]

FORGE_TIMEOUT_SECONDS = 30.0
"""One request to the forge may take this long (then 504)."""
USER_AGENT = "agent-sessions"
PAGE = 100
"""Check runs and statuses read per commit: one page (a summary, not an audit)."""

_PASSED = {"success", "neutral", "skipped"}
_FAILED_STATUS = {"failure", "error"}


class GitHubForge:
    """GitHub's pull requests for one token (see the module's docstring)."""

    def __init__(self, api_url: str, token: str, *, timeout: float | None = None) -> None:
        from githubkit import GitHub, TokenAuthStrategy

        self._github: GitHub[TokenAuthStrategy] = GitHub(
            TokenAuthStrategy(token),
            base_url=api_url,
            user_agent=USER_AGENT,
            timeout=timeout if timeout is not None else FORGE_TIMEOUT_SECONDS,
            http_cache=False,
            auto_retry=False,
            follow_redirects=False,
            trust_env=False,
        )

    def __repr__(self) -> str:  # githubkit's auth strategy would show the token
        return f"GitHubForge({self._github.config.base_url})"

    async def __aenter__(self) -> Self:
        await self._github.__aenter__()  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._github.__aexit__(exc_type, exc, tb)

    # --- the Forge protocol ---------------------------------------------------------------------

    async def default_branch(self, repo: RepoRef) -> str:
        with _mapped(repository_missing(repo)):
            got = await self._github.rest.repos.async_get(repo.owner, repo.name)
            return got.parsed_data.default_branch

    async def create_pull_request(
        self, repo: RepoRef, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        from githubkit.exception import RequestFailed

        with _mapped(repository_missing(repo)):
            try:
                created = await self._github.rest.pulls.async_create(
                    repo.owner, repo.name, head=head, base=base, title=title, body=body,
                    draft=draft,
                )  # fmt: skip
            except RequestFailed as err:
                if (refusal := _create_refusal(err, head, base)) is not None:
                    raise refusal from None
                raise
            return _pull_request(created.parsed_data)

    async def get_pull_request(
        self, repo: RepoRef, number: int, *, with_checks: bool = True
    ) -> PullRequest:
        with _mapped(pull_request_missing(repo, number)):
            got = await self._github.rest.pulls.async_get(repo.owner, repo.name, number)
            pr = _pull_request(got.parsed_data)
        if not with_checks:
            return pr
        return _with_checks(pr, await self.checks(repo, pr.head_sha))

    async def find_open_pull_request(self, repo: RepoRef, head: str) -> PullRequest | None:
        with _mapped(repository_missing(repo)):
            found = await self._github.rest.pulls.async_list(
                repo.owner, repo.name, state="open", head=f"{repo.owner}:{head}", per_page=1
            )
            items: list[Any] = list(found.parsed_data)
        # The simple form lacks mergeability: read the full one.
        if not items:
            return None
        return await self.get_pull_request(repo, items[0].number, with_checks=False)

    async def merge(self, repo: RepoRef, number: int, method: MergeMethod) -> MergeResult:
        with _mapped(pull_request_missing(repo, number)):
            done = await self._github.rest.pulls.async_merge(
                repo.owner, repo.name, number, merge_method=method
            )
            result = done.parsed_data
        if not result.merged:
            raise Conflict(f"The forge did not merge pull request #{number}: {result.message}")
        return MergeResult(sha=result.sha, message=result.message)

    async def close(self, repo: RepoRef, number: int) -> PullRequest:
        with _mapped(pull_request_missing(repo, number)):
            got = await self._github.rest.pulls.async_update(
                repo.owner, repo.name, number, state="closed"
            )
            return _pull_request(got.parsed_data)

    async def checks(self, repo: RepoRef, sha: str) -> Checks | None:
        """The check runs and the combined status of commit ``sha``, counted; None when the
        token may not read them (a fine-grained token without the checks or statuses
        permission), which is no reason to fail the pull request's route."""
        from githubkit.exception import RequestFailed

        with _mapped(Conflict(f"The commit {sha} is not on the forge ({repo})")):
            answers = await asyncio.gather(
                self._github.rest.checks.async_list_for_ref(
                    repo.owner, repo.name, sha, filter_="latest", per_page=PAGE
                ),
                self._github.rest.repos.async_get_combined_status_for_ref(
                    repo.owner, repo.name, sha, per_page=PAGE
                ),
                return_exceptions=True,  # both end before this does, whatever happens
            )
            runs, status = answers
            for answer in answers:
                if isinstance(answer, RequestFailed) and answer.response.status_code in (403, 404):
                    return None
                if isinstance(answer, BaseException):
                    raise answer
            assert not isinstance(runs, BaseException) and not isinstance(status, BaseException)
            return _count(runs.parsed_data.check_runs, status.parsed_data.statuses)


# --- mapping ----------------------------------------------------------------------------------


@contextmanager
def _mapped(not_found: AgentSessionsError) -> Iterator[None]:
    """githubkit's exceptions (and an answer of the wrong shape) → the API's errors."""
    from githubkit.exception import RequestError, RequestFailed, RequestTimeout
    from pydantic import ValidationError

    try:
        yield
    except RequestFailed as err:
        status = err.response.status_code
        message = _message(err.response.raw_response.content)
        raise forge_error(status, message, not_found=not_found) from None
    except RequestTimeout:
        raise forge_error(None, "", not_found=not_found, timeout=True) from None
    except RequestError as err:
        raise forge_error(None, type(err.exc).__name__, not_found=not_found) from None
    except ValidationError:
        raise forge_error(502, "an answer of an unexpected shape", not_found=not_found) from None


def _message(content: bytes) -> str:
    """A GitHub error body's words: ``message`` and each of ``errors``' messages, capped."""
    import json

    try:
        data = json.loads(content)
    except ValueError:
        return "(no message)"
    if not isinstance(data, dict):
        return "(no message)"
    parts = [str(data.get("message") or "").strip()]
    for item in data.get("errors") or ():
        if isinstance(item, dict) and item.get("message"):
            parts.append(str(item["message"]).strip())
        elif isinstance(item, dict) and item.get("field"):
            parts.append(f"{item.get('field')} is {item.get('code', 'invalid')}")
        elif isinstance(item, str):
            parts.append(item.strip())
    return "; ".join(p for p in parts if p)[:500] or "(no message)"


def _create_refusal(err: Any, head: str, base: str) -> Conflict | None:
    """A clearer 409 for the two refusals a user meets most when opening a pull request."""
    import json

    if err.response.status_code != 422:
        return None
    try:
        errors = json.loads(err.response.raw_response.content).get("errors") or []
    except (ValueError, AttributeError):
        return None
    fields = {e.get("field") for e in errors if isinstance(e, dict)}
    if "head" in fields:
        return Conflict(f"The branch {head} is not on the forge: push the branch first")
    if "base" in fields:
        return Conflict(f"The base branch {base} is not on the forge")
    return None


# --- conversion -------------------------------------------------------------------------------


def _pull_request(data: Any) -> PullRequest:
    """githubkit's ``PullRequest`` → ours (a merged pull request is ``merged``, not closed)."""
    state: PrState = "merged" if data.merged else data.state
    return PullRequest(
        number=data.number,
        url=data.html_url,
        title=data.title,
        state=state,
        draft=bool(data.draft),
        mergeable=data.mergeable,
        mergeable_state=data.mergeable_state,
        head=data.head.ref,
        base=data.base.ref,
        head_sha=data.head.sha,
    )


def _with_checks(pr: PullRequest, checks: Checks | None) -> PullRequest:
    from dataclasses import replace

    return replace(pr, checks=checks)


def _count(runs: list[Any], statuses: list[Any]) -> Checks:
    passed = failed = pending = 0
    failing: list[str] = []
    for run in runs:
        if run.status != "completed":
            pending += 1
        elif run.conclusion in _PASSED:
            passed += 1
        else:  # failure, cancelled, timed_out, action_required, stale, startup_failure
            failed += 1
            failing.append(run.name)
    for status in statuses:
        if status.state == "success":
            passed += 1
        elif status.state in _FAILED_STATUS:
            failed += 1
            failing.append(status.context)
        else:
            pending += 1
    total = len(runs) + len(statuses)
    return Checks(total, passed, failed, pending, tuple(failing))
