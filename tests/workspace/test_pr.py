"""Pull requests end to end: the real app, DBOS and bubblewrap sandboxes (a real git repository
in the workspace), the scripted stand-in model, and the GitHub STAND-IN
(``tests/support/github_stand_in.py``: GitHub's API cannot be reached from here) over real HTTP,
driven through githubkit as GitHub would be."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from agent_sessions.sandbox import provider_from_settings
from agent_sessions.store.models import SessionRow
from agent_sessions.workspace import github
from agent_sessions.workspace.credentials import Vault, set_token
from tests.agent.conftest import Agents, AgentsFactory
from tests.conftest import free_port
from tests.support.git_server import git, make_bare
from tests.support.github_stand_in import GitHubStandIn, run_github_stand_in
from tests.support.model_server import Fail, Text

OWNER, REPO = "acme", "app"
MARKER = "MARKER_greeting_endpoint_7731"
"""A line of the branch's diff: the model must see it."""
SUBJECTS = ("Add the greeting endpoint", "Document the greeting endpoint")

# The workspace: main with a README (origin/main as if cloned), then a branch of two commits.
REPO_SCRIPT = f"""
set -e
export GIT_AUTHOR_NAME=T GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=T
export GIT_COMMITTER_EMAIL=t@example.com
git init -q -b main
echo '# app' > README.md
git add -A && git commit -q -m initial
git update-ref refs/remotes/origin/main HEAD
git checkout -q -b feature
mkdir -p src && printf 'def greet():\\n    return "{MARKER}"\\n' > src/app.py
git add -A && git commit -q -m "{SUBJECTS[0]}"
echo 'GET /greet' >> README.md
git add -A && git commit -q -m "{SUBJECTS[1]}"
git rev-parse main HEAD
"""


def _token() -> str:
    return "ghp_" + secrets.token_hex(16)


@pytest.fixture
def token() -> str:
    return _token()


@pytest.fixture
def gh(token: str) -> Iterator[GitHubStandIn]:
    with run_github_stand_in(GitHubStandIn(token)) as stand_in:
        yield stand_in


@dataclass
class World:
    h: Agents
    gh: GitHubStandIn
    sid: str
    chat_id: str
    head_sha: str

    def url(self, tail: str = "") -> str:
        return f"/api/sessions/{self.sid}/pr{tail}"

    def post(self, tail: str = "", body: Any = None) -> Any:
        return self.h.client.post(self.url(tail), json=body, headers=self.h.account.headers)

    def get(self) -> Any:
        return self.h.client.get(self.url(), headers=self.h.account.headers)

    def session(self) -> dict[str, Any]:
        r = self.h.client.get(f"/api/sessions/{self.sid}", headers=self.h.account.headers)
        assert r.status_code == 200, r.text
        return r.json()["session"]  # type: ignore[no-any-return]

    def exec(self, command: str) -> str:
        state = self.session()["sandboxState"]

        async def run() -> str:
            box = await provider_from_settings(self.h.settings).connect(state)
            done = await box.exec(command)
            assert done.exit_code == 0, done.stderr
            return done.stdout

        return asyncio.run(run())


def _world(
    h: Agents,
    gh: GitHubStandIn,
    *,
    account_token: str | None,
    branch: str = "feature",
    repo: bool = True,
    git: bool = False,
) -> World:
    """A session bound to acme/app on ``branch`` (columns set directly: the create API's repo
    binding is another part of the work), the account's token, and the stand-in's repository."""
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    with h.backend.db.write() as s:
        values = {"repo_owner": OWNER, "repo_name": REPO} if repo else {}
        s.execute(update(SessionRow).where(SessionRow.id == sid).values(branch=branch, **values))
        if account_token is not None:
            set_token(s, Vault(h.settings), h.account.id, account_token, "octo")
    world = World(h, gh, sid, chat_id, "b" * 40)
    main_sha = "a" * 40
    if git:
        main_sha, world.head_sha = world.exec(REPO_SCRIPT).split()
    gh.add_repo(OWNER, REPO, branches={"main": main_sha, "feature": world.head_sha})
    return world


def _forge(h_factory: AgentsFactory, gh: GitHubStandIn, **settings: Any) -> Agents:
    return h_factory(forge_api_url=gh.api_url, **settings)


def _set_model(w: World, model: str) -> None:
    r = w.h.client.patch(
        f"/api/sessions/{w.sid}/chats/{w.chat_id}", json={"modelId": model},
        headers=w.h.account.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text


def _pull_posts(gh: GitHubStandIn) -> list[Any]:
    return [r for r in gh.requests() if r.method == "POST" and r.path.endswith("/pulls")]


# --- opening -----------------------------------------------------------------------------------


def test_create_with_the_given_title_and_body(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    r = w.post(body={"title": "Add greeting", "body": "Adds it.", "draft": True})
    assert r.status_code == 200, r.text
    pr = r.json()
    assert pr == {
        "number": 1, "url": f"https://github.com/{OWNER}/{REPO}/pull/1", "title": "Add greeting",
        "state": "open", "draft": True, "mergeable": True, "mergeableState": "draft",
        "checks": {"total": 0, "passed": 0, "failed": 0, "pending": 0},
        "head": "feature", "base": "main", "created": True,
    }  # fmt: skip
    (sent,) = _pull_posts(gh)
    assert sent.body == {
        "title": "Add greeting", "body": "Adds it.", "head": "feature", "base": "main",
        "draft": True,
    }  # fmt: skip
    assert sent.headers["authorization"] == f"token {token}"
    session = w.session()
    assert (session["prNumber"], session["prStatus"]) == (1, "open")


def test_create_with_text_written_by_the_chat_model_from_the_diff(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token, git=True)
    model = h.script([Text("Add a greeting endpoint\n\n## Summary\nGreets.\n\n## Changes\n- it")])
    _set_model(w, model)
    r = w.post(body={"base": "main"})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Add a greeting endpoint"
    assert gh.pull(OWNER, REPO, 1).body == "## Summary\nGreets.\n\n## Changes\n- it"
    (request,) = h.model.requests(model.split("/", 1)[1])
    prompt = json.dumps(request)
    assert MARKER in prompt  # the diff
    assert all(subject in prompt for subject in SUBJECTS)  # the commits
    assert "src/app.py" in prompt  # the diffstat
    assert token not in prompt


def test_a_plain_text_without_a_model(agents: AgentsFactory, gh: GitHubStandIn, token: str) -> None:
    h = _forge(agents, gh, openai_api_key=None)  # the default model is not configured
    w = _world(h, gh, account_token=token, git=True)
    r = w.post()
    assert r.status_code == 200, r.text
    pull = gh.pull(OWNER, REPO, 1)
    assert pull.title == "Changes from feature"
    assert pull.body is not None
    assert all(f"- {subject}" in pull.body for subject in SUBJECTS)
    assert "src/app.py" in pull.body


def test_a_failing_model_falls_back_to_the_plain_text(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token, git=True)
    model = h.script([Fail(400, "no such thing")])
    _set_model(w, model)
    r = w.post(body={"body": "Mine."})
    assert r.status_code == 200, r.text
    assert h.model.requests(model.split("/", 1)[1])  # it was asked
    pull = gh.pull(OWNER, REPO, 1)
    assert (pull.title, pull.body) == ("Changes from feature", "Mine.")


def test_an_open_pull_request_for_the_branch_is_reused(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    number = gh.add_pull(OWNER, REPO, head="feature", base="main", title="made on the forge")
    first = w.post(body={"title": "t", "body": "b"})
    assert first.status_code == 200, first.text
    assert (first.json()["number"], first.json()["created"]) == (number, False)
    assert first.json()["title"] == "made on the forge"
    again = w.post()  # through the session's own prNumber this time
    assert (again.json()["number"], again.json()["created"]) == (number, False)
    assert _pull_posts(gh) == []
    assert w.session()["prNumber"] == number


def test_a_new_pull_request_after_the_last_one_was_closed(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.post(body={"title": "one", "body": ""}).json()["number"] == 1
    assert w.post("/close").json()["state"] == "closed"
    second = w.post(body={"title": "two", "body": ""})
    assert (second.json()["number"], second.json()["created"]) == (2, True)
    assert (w.session()["prNumber"], w.session()["prStatus"]) == (2, "open")


def test_the_branch_must_be_pushed_to_a_real_remote_first(
    agents: AgentsFactory, gh: GitHubStandIn, token: str, tmp_path: Path
) -> None:
    """The stand-in reads the branches of a real bare repository: until the branch is pushed
    there, the forge has no such head and the answer says to push."""
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    work = make_bare(tmp_path, REPO, {"README.md": "# app\n"})
    gh.add_repo(OWNER, REPO, git_dir=tmp_path / f"{REPO}.git")
    refused = w.post(body={"title": "t", "body": "b"})
    assert refused.status_code == 409, refused.text
    assert "push the branch first" in refused.json()["error"]

    git(work, "checkout", "-q", "-b", "feature")
    (work / "app.py").write_text("print(1)\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "app")
    git(work, "push", "-q", "origin", "feature")
    r = w.post(body={"title": "t", "body": "b"})
    assert r.status_code == 200, r.text
    assert gh.pull(OWNER, REPO, 1).head_sha == git(work, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-repository", "The session has no repository"),
        ("branch-is-base", "is the base branch"),
        ("not-pushed", "The branch feature is not on the forge: push the branch first"),
        ("no-token", "No forge token"),
    ],
)
def test_refusals_before_anything_is_opened(
    agents: AgentsFactory, gh: GitHubStandIn, token: str, case: str, message: str
) -> None:
    h = _forge(agents, gh)
    w = _world(
        h, gh, account_token=None if case == "no-token" else token,
        branch="main" if case == "branch-is-base" else "feature",
        repo=case != "no-repository",
    )  # fmt: skip
    if case == "not-pushed":
        gh.add_repo(OWNER, REPO, branches={"main": "a" * 40})
    r = w.post(body={"title": "t", "body": "b"})
    assert r.status_code == 409, r.text
    assert r.json()["status"] == "error"
    assert message in r.json()["error"]
    assert gh.pulls(OWNER, REPO) == []
    assert w.session()["prNumber"] is None


# --- reading, merging, closing -----------------------------------------------------------------


def test_get_answers_state_mergeability_and_checks(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.get().status_code == 404  # no pull request yet
    assert w.post(body={"title": "t", "body": "b"}).status_code == 200
    gh.set_checks(w.head_sha, [
        ("test", "completed", "success"), ("lint", "completed", "failure"),
        ("e2e", "in_progress", None),
    ])  # fmt: skip
    gh.set_statuses(w.head_sha, [("deploy/preview", "success")])
    gh.set_mergeable(OWNER, REPO, 1, True, "unstable")
    r = w.get()
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["checks"] == {"total": 4, "passed": 2, "failed": 1, "pending": 1}
    assert (got["state"], got["mergeable"], got["mergeableState"]) == ("open", True, "unstable")
    assert (got["head"], got["base"]) == ("feature", "main")
    gh.pull(OWNER, REPO, 1).state = "closed"  # closed on the forge by someone
    assert w.get().json()["state"] == "closed"
    assert w.session()["prStatus"] == "closed"


def test_merge(agents: AgentsFactory, gh: GitHubStandIn, token: str) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.post("/merge").status_code == 404  # nothing to merge yet
    assert w.post(body={"title": "t", "body": "b"}).status_code == 200
    r = w.post("/merge", {"method": "squash"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "merged"
    assert r.json()["mergeCommitSha"] == gh.pull(OWNER, REPO, 1).merge_sha
    (put,) = [q for q in gh.requests() if q.method == "PUT"]
    assert put.body == {"merge_method": "squash"}
    assert w.session()["prStatus"] == "merged"
    again = w.post("/merge")
    assert again.status_code == 409
    assert "is merged" in again.json()["error"]


@pytest.mark.parametrize(
    ("mergeable", "state", "message"),
    [
        (False, "dirty", "has conflicts with main"),
        (True, "blocked", "blocked by main's rules: required checks (failing: test)"),
        (True, "draft", "is a draft"),
    ],
)
def test_merge_refused_when_not_mergeable(
    agents: AgentsFactory,
    gh: GitHubStandIn,
    token: str,
    mergeable: bool,
    state: str,
    message: str,
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.post(body={"title": "t", "body": "b"}).status_code == 200
    gh.set_mergeable(OWNER, REPO, 1, mergeable, state)
    gh.set_checks(w.head_sha, [("test", "completed", "failure")])
    r = w.post("/merge")
    assert r.status_code == 409, r.text
    assert message in r.json()["error"]
    assert [q for q in gh.requests() if q.method == "PUT"] == []
    assert gh.pull(OWNER, REPO, 1).merged is False
    assert w.session()["prStatus"] == "open"


def test_the_forges_own_refusal_to_merge_is_a_409_in_its_words(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.post(body={"title": "t", "body": "b"}).status_code == 200
    gh.set_mergeable(OWNER, REPO, 1, None, "unknown")  # still being computed: the forge decides
    gh.refuse_merge = "Base branch was modified. Review and try the merge again."
    r = w.post("/merge")
    assert r.status_code == 409, r.text
    assert r.json()["error"] == (
        "The forge refused: Base branch was modified. Review and try the merge again."
    )
    assert w.session()["prStatus"] == "open"


def test_checks_the_token_may_not_read_are_null(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    gh.deny_checks = True
    created = w.post(body={"title": "t", "body": "b"})
    assert created.status_code == 200, created.text
    assert created.json()["checks"] is None
    got = w.get()
    assert got.status_code == 200, got.text
    assert (got.json()["checks"], got.json()["state"]) == (None, "open")


def test_close_and_a_merged_one_cannot_be(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.post(body={"title": "t", "body": "b"}).status_code == 200
    r = w.post("/close")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "closed"
    assert gh.pull(OWNER, REPO, 1).state == "closed"
    assert w.session()["prStatus"] == "closed"
    assert w.post("/close").json()["state"] == "closed"  # closing again changes nothing

    gh.set_branch(OWNER, REPO, "feature", "c" * 40)
    assert w.post(body={"title": "t2", "body": "b"}).json()["number"] == 2
    assert w.post("/merge").status_code == 200
    refused = w.post("/close")
    assert refused.status_code == 409
    assert "is merged: it cannot be closed" in refused.json()["error"]
    assert gh.pull(OWNER, REPO, 2).merged is True


# --- the forge failing, and the token ----------------------------------------------------------


def test_a_refused_token_is_a_502_that_does_not_show_it(
    agents: AgentsFactory, gh: GitHubStandIn
) -> None:
    h = _forge(agents, gh)
    wrong = _token()
    w = _world(h, gh, account_token=wrong)
    r = w.post(body={"title": "t", "body": "b"})
    assert r.status_code == 502, r.text
    assert r.json() == {
        "status": "error",
        "error": "The forge refused the token: set a valid one for the account (or the operator's)",
    }
    assert wrong not in r.text
    assert gh.requests()[0].headers["authorization"] == f"token {wrong}"  # it was sent


def test_the_operator_token_is_the_fallback(agents: AgentsFactory, gh: GitHubStandIn) -> None:
    operator = _token()
    gh.token = operator
    h = _forge(agents, gh, forge_token=operator)
    w = _world(h, gh, account_token=None)
    r = w.post(body={"title": "t", "body": "b"})
    assert r.status_code == 200, r.text
    assert {q.headers["authorization"] for q in gh.requests()} == {f"token {operator}"}


def test_a_silent_forge_is_a_504(
    agents: AgentsFactory, gh: GitHubStandIn, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token)
    assert w.post(body={"title": "t", "body": "b"}).status_code == 200
    monkeypatch.setattr(github, "FORGE_TIMEOUT_SECONDS", 0.5)
    gh.hold = threading.Event()  # the stand-in takes requests and never answers
    try:
        r = w.get()
    finally:
        gh.hold.set()
    assert r.status_code == 504, r.text
    assert r.json()["error"] == "The forge did not answer in time"


def test_an_unreachable_forge_is_a_502(
    agents: AgentsFactory, gh: GitHubStandIn, token: str
) -> None:
    h = agents(forge_api_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    w = _world(h, gh, account_token=token)
    r = w.post(body={"title": "t", "body": "b"})
    assert r.status_code == 502, r.text
    assert r.json()["error"].startswith("The forge could not be reached")
    assert w.session()["prNumber"] is None


def test_the_token_is_in_no_response_log_line_or_model_request(
    agents: AgentsFactory, gh: GitHubStandIn, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = _forge(agents, gh)
    w = _world(h, gh, account_token=token, git=True)
    model = h.script([Text("Add a greeting endpoint\n\nBody.")])
    _set_model(w, model)
    answers = [
        w.post(),
        w.get(),
        w.post("/merge", {"method": "rebase"}),
        w.post("/close"),  # 409: merged
        h.client.get(f"/api/sessions/{w.sid}", headers=h.account.headers),
        h.client.get("/api/sessions", headers=h.account.headers),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 409, 200, 200]
    # and a refused token's failure, logged or not
    with h.backend.db.write() as s:
        set_token(s, Vault(h.settings), h.account.id, token + "x", None)
    answers.append(w.get())
    assert answers[-1].status_code == 502
    for answer in answers:
        assert token not in answer.text
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    for record in caplog.records:
        line = caplog.handler.format(record)
        assert token not in line, line
    requests = h.model.requests(model.split("/", 1)[1])
    assert requests
    assert token not in json.dumps(requests)
    assert token not in w.exec("grep -rI . -e . 2>/dev/null | head -c 1000000 || true")
    # the token did reach the forge, where it belongs
    assert any(q.headers["authorization"] == f"token {token}" for q in gh.requests())
