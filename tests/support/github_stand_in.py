"""A STAND-IN for GitHub's REST API: GitHub's API cannot be reached from here. It is not GitHub.

It serves, over real HTTP on loopback, only what ``agent_sessions.workspace.github`` calls, with
GitHub's response shapes (every field githubkit's models require, so githubkit validates them as
it validates GitHub's) and GitHub's error bodies (``{"message", "documentation_url", "status"}``,
422 with ``errors``). Every response carries the header ``x-stand-in: github``.

Routes::

    GET   /repos/{owner}/{repo}                          the repository (default branch)
    GET   /repos/{owner}/{repo}/pulls?state&head&per_page  pull requests (simple form)
    POST  /repos/{owner}/{repo}/pulls                    create (422 as GitHub: head/base
                                                         missing, one already open, no commits)
    GET   /repos/{owner}/{repo}/pulls/{number}           one pull request
    PATCH /repos/{owner}/{repo}/pulls/{number}           title, body, state (close/reopen)
    PUT   /repos/{owner}/{repo}/pulls/{number}/merge     405 when not mergeable, as GitHub
    GET   /repos/{owner}/{repo}/commits/{ref}/check-runs
    GET   /repos/{owner}/{repo}/commits/{ref}/status     the combined status

Every request must carry ``Authorization: Bearer <token>`` or ``token <token>`` with the token
the test set (``401 Bad credentials`` otherwise), and is recorded (method, path, query, headers,
body) for assertions. Tests set the state: repositories and their branches (or a bare git
repository whose branches are read with git), a pull request's mergeability, check runs and
commit statuses per commit, a ``hold`` that keeps every answer waiting (for timeouts), check
runs the token may not read, and a merge GitHub itself refuses.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["GitHubStandIn", "Recorded", "run_github_stand_in"]

DOCS = "https://docs.github.com/rest"
STAMP = "2026-01-02T03:04:05Z"
HEADERS = {"x-stand-in": "github"}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class _Repo:
    owner: str
    name: str
    id: int
    default_branch: str
    branches: dict[str, str]
    """branch → head commit sha (when no ``git_dir``)."""
    git_dir: Path | None = None


@dataclass
class _Pull:
    number: int
    id: int
    title: str
    body: str | None
    head: str
    base: str
    head_sha: str
    base_sha: str
    draft: bool
    author: str
    state: str = "open"
    merged: bool = False
    merge_sha: str | None = None
    mergeable: bool | None = True
    mergeable_state: str = "clean"


@dataclass
class _Check:
    name: str
    status: str  # queued | in_progress | completed
    conclusion: str | None


class GitHubStandIn:
    """The stand-in's state and its Starlette ``app`` (see the module's docstring)."""

    def __init__(self, token: str, login: str = "octo-agent", web_url: str = "https://github.com"):
        self.token = token
        self.login = login
        self.web_url = web_url.rstrip("/")
        self.host = "127.0.0.1"
        self.port = 0
        self.hold: threading.Event | None = None
        """While set to an unset event, every answer waits for it (at most two minutes)."""
        self.deny_checks = False
        """Answer check runs with 403, as GitHub does for a token without that permission."""
        self.refuse_merge: str | None = None
        """Refuse every merge with 405 and this message (GitHub's own last word)."""
        self._lock = threading.Lock()
        self._ids = itertools.count(1000)
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._pulls: dict[tuple[str, str], dict[int, _Pull]] = {}
        self._checks: dict[str, list[_Check]] = {}
        self._statuses: dict[str, list[tuple[str, str]]] = {}
        self._requests: list[Recorded] = []
        base = "/repos/{owner}/{repo}"
        self.app = Starlette(
            routes=[
                Route(base, self._get_repo, methods=["GET"]),
                Route(f"{base}/pulls", self._list_pulls, methods=["GET"]),
                Route(f"{base}/pulls", self._create_pull, methods=["POST"]),
                Route(f"{base}/pulls/{{number:int}}", self._get_pull, methods=["GET"]),
                Route(f"{base}/pulls/{{number:int}}", self._update_pull, methods=["PATCH"]),
                Route(f"{base}/pulls/{{number:int}}/merge", self._merge, methods=["PUT"]),
                Route(f"{base}/commits/{{ref}}/check-runs", self._check_runs, methods=["GET"]),
                Route(f"{base}/commits/{{ref}}/status", self._status, methods=["GET"]),
            ]
        )

    @property
    def api_url(self) -> str:
        """What ``AGENT_SESSIONS_FORGE_API_URL`` should be."""
        return f"http://{self.host}:{self.port}"

    # --- what tests set ---------------------------------------------------------------------------

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        default_branch: str = "main",
        branches: dict[str, str] | None = None,
        git_dir: Path | None = None,
    ) -> None:
        """A repository; its branches are ``branches`` (name → sha), or those of the bare
        repository ``git_dir`` (read with git at each request)."""
        with self._lock:
            self._repos[(owner, name)] = _Repo(
                owner, name, next(self._ids), default_branch,
                dict(branches or {default_branch: "0" * 40}), git_dir,
            )  # fmt: skip
            self._pulls.setdefault((owner, name), {})

    def set_branch(self, owner: str, name: str, branch: str, sha: str) -> None:
        """As if ``branch`` had been pushed with ``sha`` at its head."""
        with self._lock:
            self._repos[(owner, name)].branches[branch] = sha

    def add_pull(self, owner: str, name: str, *, head: str, base: str, title: str = "x") -> int:
        """An open pull request made outside the service (by someone on the forge)."""
        with self._lock:
            return self._new_pull(self._repos[(owner, name)], head, base, title, None, False).number

    def set_mergeable(
        self, owner: str, name: str, number: int, mergeable: bool | None, state: str
    ) -> None:
        """``mergeable`` and ``mergeable_state`` (clean, dirty, blocked, unstable, unknown…)."""
        with self._lock:
            pull = self._pulls[(owner, name)][number]
            pull.mergeable, pull.mergeable_state = mergeable, state

    def set_checks(self, sha: str, runs: list[tuple[str, str, str | None]]) -> None:
        """Check runs of commit ``sha``: (name, status, conclusion)."""
        with self._lock:
            self._checks[sha] = [_Check(*run) for run in runs]

    def set_statuses(self, sha: str, statuses: list[tuple[str, str]]) -> None:
        """Commit statuses of ``sha``: (context, state: success|pending|failure|error)."""
        with self._lock:
            self._statuses[sha] = list(statuses)

    def pull(self, owner: str, name: str, number: int) -> _Pull:
        with self._lock:
            return self._pulls[(owner, name)][number]

    def pulls(self, owner: str, name: str) -> list[_Pull]:
        with self._lock:
            return list(self._pulls[(owner, name)].values())

    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    # --- GitHub's objects -------------------------------------------------------------------------

    def _user(self, login: str) -> dict[str, Any]:
        api, uid = f"{self.api_url}/users/{login}", sum(map(ord, login))
        return {
            "login": login, "id": uid, "node_id": f"U_{uid}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "gravatar_id": "", "url": api, "html_url": f"{self.web_url}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events", "type": "User",
            "user_view_type": "public", "site_admin": False,
        }  # fmt: skip

    def _repository(self, repo: _Repo) -> dict[str, Any]:
        """GitHub's full repository object (a superset of the minimal and plain ones)."""
        full = f"{repo.owner}/{repo.name}"
        api = f"{self.api_url}/repos/{full}"
        templated = {
            "archive_url": "{archive_format}{/ref}", "assignees_url": "assignees{/user}",
            "blobs_url": "git/blobs{/sha}", "branches_url": "branches{/branch}",
            "collaborators_url": "collaborators{/collaborator}",
            "comments_url": "comments{/number}", "commits_url": "commits{/sha}",
            "compare_url": "compare/{base}...{head}", "contents_url": "contents/{+path}",
            "contributors_url": "contributors", "deployments_url": "deployments",
            "downloads_url": "downloads", "events_url": "events", "forks_url": "forks",
            "git_commits_url": "git/commits{/sha}", "git_refs_url": "git/refs{/sha}",
            "git_tags_url": "git/tags{/sha}", "hooks_url": "hooks",
            "issue_comment_url": "issues/comments{/number}",
            "issue_events_url": "issues/events{/number}", "issues_url": "issues{/number}",
            "keys_url": "keys{/key_id}", "labels_url": "labels{/name}",
            "languages_url": "languages", "merges_url": "merges",
            "milestones_url": "milestones{/number}",
            "notifications_url": "notifications{?since,all,participating}",
            "pulls_url": "pulls{/number}", "releases_url": "releases{/id}",
            "stargazers_url": "stargazers", "statuses_url": "statuses/{sha}",
            "subscribers_url": "subscribers", "subscription_url": "subscription",
            "tags_url": "tags", "teams_url": "teams", "trees_url": "git/trees{/sha}",
        }  # fmt: skip
        host = self.web_url.split("://", 1)[-1]
        return {
            "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": full,
            "owner": self._user(repo.owner), "private": True,
            "html_url": f"{self.web_url}/{full}", "description": None, "fork": False,
            "url": api, **{k: f"{api}/{v}" for k, v in templated.items()},
            "git_url": f"git://{host}/{full}.git", "ssh_url": f"git@{host}:{full}.git",
            "clone_url": f"{self.web_url}/{full}.git", "svn_url": f"{self.web_url}/{full}",
            "mirror_url": None, "homepage": None, "language": None, "forks_count": 0,
            "stargazers_count": 0, "watchers_count": 0, "size": 1,
            "default_branch": repo.default_branch, "open_issues_count": 0,
            "is_template": False, "topics": [], "has_issues": True, "has_projects": True,
            "has_wiki": False, "has_pages": False, "has_downloads": True,
            "has_discussions": False, "archived": False, "disabled": False,
            "visibility": "private", "pushed_at": STAMP, "created_at": STAMP,
            "updated_at": STAMP, "permissions": {"admin": False, "maintain": False,
            "push": True, "triage": True, "pull": True}, "allow_forking": True,
            "web_commit_signoff_required": False, "subscribers_count": 1, "network_count": 0,
            "license": None, "forks": 0, "open_issues": 0, "watchers": 0,
        }  # fmt: skip

    def _pull_json(self, repo: _Repo, pull: _Pull, *, full: bool = True) -> dict[str, Any]:
        full_name = f"{repo.owner}/{repo.name}"
        api = f"{self.api_url}/repos/{full_name}"
        html = f"{self.web_url}/{full_name}/pull/{pull.number}"
        repository = self._repository(repo)

        def end(ref: str, sha: str) -> dict[str, Any]:
            return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha,
                    "user": self._user(repo.owner), "repo": repository}  # fmt: skip

        closed = pull.state == "closed"
        out: dict[str, Any] = {
            "url": f"{api}/pulls/{pull.number}", "id": pull.id, "node_id": f"PR_{pull.id}",
            "html_url": html, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{pull.number}",
            "commits_url": f"{api}/pulls/{pull.number}/commits",
            "review_comments_url": f"{api}/pulls/{pull.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "statuses_url": f"{api}/statuses/{pull.head_sha}",
            "number": pull.number, "state": pull.state, "locked": False, "title": pull.title,
            "user": self._user(pull.author), "body": pull.body, "labels": [],
            "milestone": None, "active_lock_reason": None, "created_at": STAMP,
            "updated_at": STAMP, "closed_at": STAMP if closed else None,
            "merged_at": STAMP if pull.merged else None, "merge_commit_sha": pull.merge_sha,
            "assignee": None, "assignees": [], "requested_reviewers": [],
            "requested_teams": [], "head": end(pull.head, pull.head_sha),
            "base": end(pull.base, pull.base_sha),
            "_links": {k: {"href": v} for k, v in {
                "self": f"{api}/pulls/{pull.number}", "html": html,
                "issue": f"{api}/issues/{pull.number}",
                "comments": f"{api}/issues/{pull.number}/comments",
                "review_comments": f"{api}/pulls/{pull.number}/comments",
                "review_comment": f"{api}/pulls/comments{{/number}}",
                "commits": f"{api}/pulls/{pull.number}/commits",
                "statuses": f"{api}/statuses/{pull.head_sha}"}.items()},
            "author_association": "COLLABORATOR", "auto_merge": None, "draft": pull.draft,
        }  # fmt: skip
        if full:
            merged_state = pull.mergeable_state if pull.state == "open" else "unknown"
            out.update({
                "merged": pull.merged, "mergeable": pull.mergeable if not closed else None,
                "rebaseable": pull.mergeable, "mergeable_state": merged_state,
                "merged_by": self._user(self.login) if pull.merged else None, "comments": 0,
                "review_comments": 0, "maintainer_can_modify": False, "commits": 1,
                "additions": 1, "deletions": 0, "changed_files": 1,
            })  # fmt: skip
        return out

    # --- plumbing --------------------------------------------------------------------------------

    def _new_pull(
        self, repo: _Repo, head: str, base: str, title: str, body: str | None, draft: bool
    ) -> _Pull:
        pulls = self._pulls[(repo.owner, repo.name)]
        number = len(pulls) + 1
        pull = _Pull(
            number, next(self._ids), title, body, head, base, self._sha(repo, head) or "",
            self._sha(repo, base) or "", draft, self.login,
        )  # fmt: skip
        if draft:
            pull.mergeable_state = "draft"
        pulls[number] = pull
        return pull

    def _sha(self, repo: _Repo, branch: str) -> str | None:
        if repo.git_dir is None:
            return repo.branches.get(branch)
        done = subprocess.run(
            ["git", "rev-parse", "-q", "--verify", f"refs/heads/{branch}^{{commit}}"],
            cwd=repo.git_dir, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout.strip() or None

    async def _enter(self, request: Request) -> tuple[Any, Response | None]:
        """Record the request, wait for ``hold``, check the token; the body and any refusal."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self._requests.append(
                Recorded(
                    request.method, request.url.path, dict(request.query_params),
                    {k.lower(): v for k, v in request.headers.items()}, body,
                )
            )  # fmt: skip
            hold = self.hold
        if hold is not None:
            await _wait(hold)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or token != self.token:
            return body, _error(401, "Bad credentials")
        return body, None

    def _repo_of(self, request: Request) -> _Repo | None:
        key = (request.path_params["owner"], request.path_params["repo"])
        with self._lock:
            return self._repos.get(key)

    # --- routes ----------------------------------------------------------------------------------

    async def _enter_repo(self, request: Request) -> tuple[Any, _Repo | Response]:
        """:meth:`_enter` for a repository's route: the body, and the repository or the
        answer (a refusal, or 404)."""
        body, refused = await self._enter(request)
        if refused:
            return body, refused
        repo = self._repo_of(request)
        return body, repo if repo is not None else _error(404, "Not Found")

    async def _get_repo(self, request: Request) -> Response:
        _, repo = await self._enter_repo(request)
        if isinstance(repo, Response):
            return repo
        return _json(self._repository(repo))

    async def _list_pulls(self, request: Request) -> Response:
        _, repo = await self._enter_repo(request)
        if isinstance(repo, Response):
            return repo
        state = request.query_params.get("state", "open")
        head = request.query_params.get("head")
        with self._lock:
            found = [
                p for p in self._pulls[(repo.owner, repo.name)].values()
                if (state == "all" or p.state == state)
                and (head is None or f"{repo.owner}:{p.head}" == head)
            ]  # fmt: skip
            found.sort(key=lambda p: -p.number)
            per_page = int(request.query_params.get("per_page", "30"))
            return _json([self._pull_json(repo, p, full=False) for p in found[:per_page]])

    async def _create_pull(self, request: Request) -> Response:
        body, repo = await self._enter_repo(request)
        if isinstance(repo, Response):
            return repo
        if not isinstance(body, dict) or not body.get("head") or not body.get("base"):
            return _error(422, "Invalid request.")
        head, base = str(body["head"]).rpartition(":")[2], str(body["base"])
        with self._lock:
            if self._sha(repo, head) is None:
                return _invalid("PullRequest", "head")
            if self._sha(repo, base) is None:
                return _invalid("PullRequest", "base")
            if head == base or self._sha(repo, head) == self._sha(repo, base):
                return _custom(f"No commits between {base} and {head}")
            for p in self._pulls[(repo.owner, repo.name)].values():
                if p.state == "open" and p.head == head:
                    return _custom(f"A pull request already exists for {repo.owner}:{head}.")
            pull = self._new_pull(
                repo, head, base, str(body.get("title") or head), body.get("body"),
                bool(body.get("draft")),
            )  # fmt: skip
            return _json(self._pull_json(repo, pull), 201)

    def _find(self, request: Request) -> tuple[_Repo, _Pull] | None:
        repo = self._repo_of(request)
        if repo is None:
            return None
        with self._lock:
            pull = self._pulls[(repo.owner, repo.name)].get(request.path_params["number"])
        return (repo, pull) if pull is not None else None

    async def _enter_pull(self, request: Request) -> tuple[Any, tuple[_Repo, _Pull] | Response]:
        """:meth:`_enter` for a pull request's route: the body, and the pull request or the
        answer (a refusal, or 404)."""
        body, refused = await self._enter(request)
        if refused:
            return body, refused
        found = self._find(request)
        return body, found if found is not None else _error(404, "Not Found")

    async def _get_pull(self, request: Request) -> Response:
        _, found = await self._enter_pull(request)
        if isinstance(found, Response):
            return found
        with self._lock:
            return _json(self._pull_json(*found))

    async def _update_pull(self, request: Request) -> Response:
        body, found = await self._enter_pull(request)
        if isinstance(found, Response):
            return found
        repo, pull = found
        body = body if isinstance(body, dict) else {}
        with self._lock:
            if body.get("state") in ("open", "closed"):
                if pull.merged and body["state"] == "open":
                    return _custom("Cannot reopen a merged pull request")
                pull.state = body["state"]
            for key in ("title", "body"):
                if key in body:
                    setattr(pull, key, body[key])
            return _json(self._pull_json(repo, pull))

    async def _merge(self, request: Request) -> Response:
        body, found = await self._enter_pull(request)
        if isinstance(found, Response):
            return found
        _, pull = found
        method = body.get("merge_method", "merge") if isinstance(body, dict) else "merge"
        with self._lock:
            if self.refuse_merge is not None:
                return _error(405, self.refuse_merge)
            if (
                pull.state != "open"
                or pull.mergeable is False
                or pull.mergeable_state in ("dirty", "blocked", "draft")
            ):
                return _error(405, "Pull Request is not mergeable")
            pull.state, pull.merged = "closed", True
            pull.merge_sha = f"{pull.number:04d}{method[:1]}".ljust(40, "e")
            return _json(
                {
                    "sha": pull.merge_sha,
                    "merged": True,
                    "message": "Pull Request successfully merged",
                }
            )

    async def _check_runs(self, request: Request) -> Response:
        _, refused = await self._enter(request)
        if refused:
            return refused
        if self.deny_checks:
            return _error(403, "Resource not accessible by personal access token")
        repo = self._repo_of(request)
        if repo is None:
            return _error(404, "Not Found")
        sha = request.path_params["ref"]
        api = f"{self.api_url}/repos/{repo.owner}/{repo.name}"
        with self._lock:
            checks = list(self._checks.get(sha, ()))
        runs = []
        for i, check in enumerate(checks):
            run_id = 5000 + i
            runs.append({
                "id": run_id, "head_sha": sha, "node_id": f"CR_{run_id}",
                "external_id": str(run_id), "url": f"{api}/check-runs/{run_id}",
                "html_url": f"{self.web_url}/{repo.owner}/{repo.name}/runs/{run_id}",
                "details_url": None, "status": check.status, "conclusion": check.conclusion,
                "started_at": STAMP,
                "completed_at": STAMP if check.status == "completed" else None,
                "output": {"title": None, "summary": None, "text": None,
                           "annotations_count": 0,
                           "annotations_url": f"{api}/check-runs/{run_id}/annotations"},
                "name": check.name, "check_suite": {"id": 7000}, "app": None,
                "pull_requests": [],
            })  # fmt: skip
        return _json({"total_count": len(runs), "check_runs": runs})

    async def _status(self, request: Request) -> Response:
        _, refused = await self._enter(request)
        if refused:
            return refused
        repo = self._repo_of(request)
        if repo is None:
            return _error(404, "Not Found")
        sha = request.path_params["ref"]
        api = f"{self.api_url}/repos/{repo.owner}/{repo.name}"
        with self._lock:
            statuses = list(self._statuses.get(sha, ()))
            repository = self._repository(repo)
        states = {state for _, state in statuses}
        combined = (
            "failure" if states & {"failure", "error"}
            else "pending" if "pending" in states or not statuses
            else "success"
        )  # fmt: skip
        items = [
            {"description": None, "id": 9000 + i, "node_id": f"SC_{9000 + i}", "state": state,
             "context": context, "target_url": None, "avatar_url": None,
             "url": f"{api}/statuses/{sha}", "created_at": STAMP, "updated_at": STAMP}
            for i, (context, state) in enumerate(statuses)
        ]  # fmt: skip
        return _json({
            "state": combined, "statuses": items, "sha": sha, "total_count": len(items),
            "repository": repository, "commit_url": f"{api}/commits/{sha}",
            "url": f"{api}/commits/{sha}/status",
        })  # fmt: skip


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=HEADERS)


def _error(status: int, message: str) -> JSONResponse:
    return _json({"message": message, "documentation_url": DOCS, "status": str(status)}, status)


def _invalid(resource: str, name: str) -> JSONResponse:
    errors = [{"resource": resource, "field": name, "code": "invalid"}]
    body = {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS,
            "status": "422"}  # fmt: skip
    return _json(body, 422)


def _custom(message: str) -> JSONResponse:
    errors = [{"resource": "PullRequest", "code": "custom", "message": message}]
    body = {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS,
            "status": "422"}  # fmt: skip
    return _json(body, 422)


async def _wait(event: threading.Event) -> None:
    import asyncio

    await asyncio.to_thread(event.wait, 120)


@contextlib.contextmanager
def run_github_stand_in(stand_in: GitHubStandIn) -> Iterator[GitHubStandIn]:
    """Serve ``stand_in`` with uvicorn in a thread on a free loopback port; stop it on exit."""
    config = uvicorn.Config(
        stand_in.app, host=stand_in.host, port=0, log_level="warning", access_log=False,
        lifespan="off", ws="none", timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="github-stand-in", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError("the GitHub stand-in did not start")
        time.sleep(0.005)
    stand_in.port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield stand_in
    finally:
        if stand_in.hold is not None:
            stand_in.hold.set()
        server.should_exit = True
        thread.join(10)
