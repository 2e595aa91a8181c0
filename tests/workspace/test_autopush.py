"""Auto-push and auto-PR after a turn, end to end: the real app, DBOS and bubblewrap sandboxes,
real git remotes over loopback (``git daemon``, or git's HTTP backend behind a token), the
scripted STAND-IN model, and the GitHub STAND-IN (``tests/support/github_stand_in.py``:
GitHub's API cannot be reached from here) over real HTTP."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from agent_sessions.agent.autopr import NOT_ON_FORGE
from agent_sessions.store.models import SessionRow
from agent_sessions.workspace import remote
from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.protocol import check_protocol
from tests.conftest import Backend, make_account, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.git_server import GitHttp, git, git_http
from tests.support.github_stand_in import GitHubStandIn, run_github_stand_in
from tests.support.model_server import Call, ModelServer, ScriptStep, Text, ToolCalls
from tests.support.waiting import until
from tests.workspace.repos import TOKEN, daemon_remote, forge_root, out, settled

COMMIT_INSTRUCTIONS = "You write git commit messages"
PR_INSTRUCTIONS = "You write the title and description of a pull request"
PR_TITLE = "Add the greeting files"
PR_BODY = "## Summary\nGreetings.\n\n## Changes\n- hello.txt"


def write(path: str, content: str = "hello\n") -> ToolCalls:
    return ToolCalls([Call("write", {"filePath": path, "content": content})])


def script(*turns: tuple[ToolCalls | None, str]) -> list[ScriptStep]:
    """Turns of (tool calls or None, final text); the commit message and pull request writers
    (their own requests, told by their instructions: always step 0) get fixed answers."""

    def first_step(step: ToolCalls | Text) -> Any:
        def answer(request: dict[str, Any]) -> ToolCalls | Text:
            text = json.dumps(request["messages"])
            if COMMIT_INSTRUCTIONS in text:
                return Text("feat: greet")
            if PR_INSTRUCTIONS in text:
                return Text(f"{PR_TITLE}\n\n{PR_BODY}")
            return step

        return answer

    steps: list[ScriptStep] = []
    for calls, said in turns:
        steps += [calls, Text(said)] if calls is not None else [Text(said)]
    steps[0] = first_step(steps[0])  # type: ignore[arg-type]
    return steps


def parts(chunks: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in chunks if c["type"] == kind]


def stored(a: Agents, sid: str, chat_id: str, kind: str) -> list[dict[str, Any]]:
    return [p for p in a.chat(sid, chat_id)["messages"][-1]["parts"] if p["type"] == kind]


def head(a: Agents, s: dict[str, Any]) -> str:
    return out(a, s, "git rev-parse HEAD").strip()


def start(a: Agents, **body: Any) -> tuple[dict[str, Any], str]:
    """A new session once active, and its chat's id."""
    r = a.client.post("/api/sessions", json=body, headers=a.account.headers)
    assert r.status_code == 200, r.text
    s = settled(a, r.json()["session"]["id"])
    assert s["lifecycleState"] == "active", s
    return s, r.json()["chat"]["id"]


def run_id(chunks: list[dict[str, Any]]) -> str:
    return str(chunks[-1]["messageMetadata"]["runId"])


# --- auto-push -----------------------------------------------------------------------------------


def test_a_turn_that_changed_files_is_committed_and_pushed(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        # autoCreatePr too: the daemon's URL names no owner/name, so no pull request
        s, chat = start(a, cloneUrl=r.url, autoCommitPush=True, autoCreatePr=True)
        model = a.script(script((write("hello.txt"), "done"), (None, "nothing to change")))
        chunks, _ = a.turn(s["id"], chat, "write hello", model=model)
        check_protocol(chunks)
        sha = head(a, s)
        commits = parts(chunks, "data-commit")
        assert [p["data"]["status"] for p in commits] == ["pending", "success"], commits
        assert commits[-1]["data"] == {
            "status": "success", "commitSha": sha, "message": "feat: greet", "branch": "main",
            "filesChanged": 1, "pushed": True, "remoteUrl": r.url,
        }  # fmt: skip
        assert r.sha("main") == sha, "the commit is in the remote's bare repository"
        assert git(r.bare, "show", "main:hello.txt") == "hello\n"
        assert out(a, s, "git status -sb | head -1").strip() == "## main...origin/main"
        assert stored(a, s["id"], chat, "data-commit") == [commits[-1]]
        assert parts(chunks, "data-pr") == [
            {"type": "data-pr", "id": "pr", "data": {"status": "skipped", "error": NOT_ON_FORGE}}
        ]

        # a turn that changes nothing: no commit, no push, nothing to say
        chunks, _ = a.turn(s["id"], chat, "again", model=model)
        assert not parts(chunks, "data-commit") and not parts(chunks, "data-pr")
        assert r.sha("main") == sha


def test_a_rejected_push_is_reported_the_turn_completes_and_nothing_is_forced(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s, chat_id = start(a, cloneUrl=r.url, autoCommitPush=True)
        (r.work / "theirs.txt").write_text("someone else\n")  # the remote moves meanwhile
        git(r.work, "add", "-A")
        git(r.work, "commit", "-q", "-m", "theirs")
        git(r.work, "push", "-q", "origin", "main")
        theirs = r.sha("main")
        model = a.script(script((write("hello.txt"), "done")))
        chunks, _ = a.turn(s["id"], chat_id, "write hello", model=model)
        check_protocol(chunks)
        assert a.wait_run(run_id(chunks))["status"] == "completed"
        commits = parts(chunks, "data-commit")
        assert commits[-1]["data"] == {
            "status": "success", "commitSha": head(a, s), "message": "feat: greet",
            "branch": "main", "filesChanged": 1, "pushed": False,
            "pushError": remote.NON_FAST_FORWARD,
        }  # fmt: skip
        assert stored(a, s["id"], chat_id, "data-commit") == [commits[-1]]
        assert r.sha("main") == theirs, "nothing forced: the remote is unchanged"
        assert out(a, s, "git status -sb | head -1").strip() == "## main...origin/main [ahead 1]"


def test_a_repository_less_session_commits_only_and_says_why(agents: AgentsFactory) -> None:
    a = agents()
    made = a.new_session()  # a fresh repository of its own: no cloneUrl, no origin
    sid, chat_id = made["session"]["id"], made["chat"]["id"]
    with a.backend.db.write() as db:  # the API refuses both without a repository
        db.execute(
            update(SessionRow)
            .where(SessionRow.id == sid)
            .values(auto_commit_push=True, auto_create_pr=True)
        )
    s = settled(a, sid)
    model = a.script(script((write("hello.txt"), "done")))
    chunks, _ = a.turn(sid, chat_id, "write hello", model=model)
    check_protocol(chunks)
    commits = parts(chunks, "data-commit")
    assert commits[-1]["data"] == {
        "status": "success", "commitSha": head(a, s), "message": "feat: greet",
        "branch": "main", "filesChanged": 1, "pushed": False,
        "pushSkipped": remote.NO_REPOSITORY,
    }  # fmt: skip
    assert out(a, s, "git remote").strip() == ""
    assert not parts(chunks, "data-pr"), "nothing was pushed: no pull request"
    assert a.wait_run(run_id(chunks))["status"] == "completed"


# --- auto-PR -------------------------------------------------------------------------------------


@dataclass
class Forge:
    """The forge of ``forge_root``: git over HTTP with the token, and the GitHub STAND-IN
    whose repository ``acme/widgets`` reads its branches from the same bare repository."""

    a: Agents
    git: GitHttp
    gh: GitHubStandIn
    bare: Path

    def session(self, **body: Any) -> tuple[dict[str, Any], str]:
        return start(self.a, repoOwner="acme", repoName="widgets", **body)

    def sha(self, branch: str) -> str:
        return git(self.bare, "rev-parse", branch).strip()


@pytest.fixture
def forge(agents: AgentsFactory, tmp_path: Path) -> Iterator[Forge]:
    root = forge_root(tmp_path)
    with (
        git_http(root, TOKEN) as served,
        run_github_stand_in(GitHubStandIn(TOKEN)) as gh,
    ):
        bare = root / "acme" / "widgets.git"
        gh.add_repo("acme", "widgets", git_dir=bare)
        a = agents(forge_base_url=served.base, forge_api_url=gh.api_url)
        put = a.client.put(
            "/api/account/forge-token", json={"token": TOKEN}, headers=a.account.headers
        )
        assert put.status_code == 200, put.text
        yield Forge(a, served, gh, bare)


def test_auto_pr_opens_after_the_first_push_and_is_reused_after(
    forge: Forge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = forge.a
    s, chat_id = forge.session(isNewBranch=True, autoCommitPush=True, autoCreatePr=True)
    branch, sid = s["branch"], s["id"]
    model = a.script(
        script(
            (write("hello.txt"), "done"),
            (write("hello-again.txt"), "done again"),
            (None, "nothing to change"),
        )
    )
    seen: list[str] = []

    chunks, _ = a.turn(sid, chat_id, "write hello", model=model)
    seen.append(json.dumps(chunks))
    check_protocol(chunks)
    first = head(a, s)
    assert parts(chunks, "data-commit")[-1]["data"]["pushed"] is True
    assert forge.sha(branch) == first
    prs = parts(chunks, "data-pr")
    assert [p["data"]["status"] for p in prs] == ["pending", "success"], prs
    opened = {"status": "success", "number": 1, "title": PR_TITLE, "created": True,
              "url": "https://github.com/acme/widgets/pull/1"}  # fmt: skip
    assert prs[-1] == {"type": "data-pr", "id": "pr", "data": opened}
    (pull,) = forge.gh.pulls("acme", "widgets")
    assert (pull.head, pull.base, pull.head_sha) == (branch, "main", first)
    assert (pull.title, pull.body, pull.state) == (PR_TITLE, PR_BODY, "open")
    assert stored(a, sid, chat_id, "data-pr") == [prs[-1]]
    assert stored(a, sid, chat_id, "data-commit") == [parts(chunks, "data-commit")[-1]]
    got = a.client.get(f"/api/sessions/{sid}", headers=a.account.headers).json()["session"]
    assert (got["prNumber"], got["prStatus"]) == (1, "open")

    # the next turn that pushes reuses the open pull request
    chunks, _ = a.turn(sid, chat_id, "write more", model=model)
    seen.append(json.dumps(chunks))
    second = head(a, s)
    assert second != first and forge.sha(branch) == second
    prs = parts(chunks, "data-pr")
    assert prs[-1]["data"] == {**opened, "created": False}
    assert len(forge.gh.pulls("acme", "widgets")) == 1, "no second pull request"
    creates = [q for q in forge.gh.requests() if q.method == "POST"]
    assert len(creates) == 1

    # a turn that changes nothing: the session has its pull request, nothing is asked
    asked = len(forge.gh.requests())
    chunks, _ = a.turn(sid, chat_id, "again", model=model)
    seen.append(json.dumps(chunks))
    assert not parts(chunks, "data-commit") and not parts(chunks, "data-pr")
    assert len(forge.gh.requests()) == asked

    seen.append(json.dumps(a.chat(sid, chat_id)))
    seen.append(json.dumps(a.model.requests(model.split("/", 1)[1])))
    for text in [*seen, caplog.text]:
        assert TOKEN not in text
        assert forge.git.expected.split()[1] not in text  # nor its Basic form
    for db_file in [*a.settings.data_dir.glob("*.sqlite*"), *a.backend.data_dir.glob("*")]:
        if db_file.is_file():  # DBOS's step records included (SQLite)
            assert TOKEN.encode() not in db_file.read_bytes(), db_file


def test_auto_pr_is_skipped_on_the_base_branch_and_says_why(forge: Forge) -> None:
    a = forge.a
    s, chat_id = forge.session(autoCommitPush=True, autoCreatePr=True)  # on main itself
    model = a.script(script((write("hello.txt"), "done")))
    chunks, _ = a.turn(s["id"], chat_id, "write hello", model=model)
    check_protocol(chunks)
    assert parts(chunks, "data-commit")[-1]["data"]["pushed"] is True
    assert forge.sha("main") == head(a, s)
    (pr,) = parts(chunks, "data-pr")
    assert pr["data"]["status"] == "skipped"
    assert "main is the base branch" in pr["data"]["error"]
    assert forge.gh.pulls("acme", "widgets") == []
    assert (
        a.client.get(f"/api/sessions/{s['id']}", headers=a.account.headers).json()["session"][
            "prNumber"
        ]
        is None
    )


def test_a_failing_forge_is_reported_and_a_later_quiet_turn_opens_the_pull_request(
    forge: Forge,
) -> None:
    """A quiet turn before anything was pushed asks the forge nothing. The forge refuses the
    token at the first push's pull request: the part says so and the turn completes. Once the
    token is right, a turn that changes nothing opens it (the branch is on the remote as it is
    in the sandbox, and the session has no pull request yet)."""
    a = forge.a
    s, chat_id = forge.session(isNewBranch=True, autoCommitPush=True, autoCreatePr=True)
    model = a.script(
        script((None, "not yet"), (write("hello.txt"), "done"), (None, "nothing to change"))
    )
    chunks, _ = a.turn(s["id"], chat_id, "nothing yet", model=model)  # the branch is not pushed
    assert not parts(chunks, "data-commit") and not parts(chunks, "data-pr")
    assert forge.gh.requests() == []

    forge.gh.token = "ghp_not-the-one-the-account-has"
    chunks, _ = a.turn(s["id"], chat_id, "write hello", model=model)
    assert a.wait_run(run_id(chunks))["status"] == "completed"
    assert parts(chunks, "data-commit")[-1]["data"]["pushed"] is True
    prs = parts(chunks, "data-pr")
    assert prs[-1]["data"]["status"] == "error", prs
    assert "refused the token" in prs[-1]["data"]["error"]

    forge.gh.token = TOKEN
    chunks, _ = a.turn(s["id"], chat_id, "again", model=model)
    assert not parts(chunks, "data-commit")
    prs = parts(chunks, "data-pr")
    assert [p["data"]["status"] for p in prs] == ["pending", "success"], prs
    assert prs[-1]["data"]["created"] is True
    (pull,) = forge.gh.pulls("acme", "widgets")
    assert (pull.head, pull.head_sha) == (s["branch"], head(a, s))


# --- crash and recovery --------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_after_the_push_then_restart_pushes_nothing_twice(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer, tmp_path: Path
) -> None:
    """The server dies right after the auto-push, before its step is recorded: the recovered
    turn pushes again, which finds the remote branch at the commit already (a no-op), and
    reports the commit pushed once."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"crash-push-{uuid.uuid4().hex[:8]}"
    model_server.script(name, script((write("hello.txt"), "done")))
    env = {
        "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model_server.base_url,
        "AGENT_SESSIONS_SANDBOX_UID_BASE": str(UID_BASE + 130),
        "AGENT_SESSIONS_SANDBOX_UID_COUNT": "10",
    }  # fmt: skip
    h = make_account(backend.db).headers
    with daemon_remote(tmp_path / "served") as r:
        before = r.sha("main")
        srv = start_server(sandbox_data_dir, backend.url, **env,
                           AGENT_SESSIONS_FAULT_POINT="auto-push.pushed")  # fmt: skip
        try:
            body = {"cloneUrl": r.url, "autoCommitPush": True}
            created = httpx.post(f"{srv.url}/api/sessions", json=body, headers=h).json()
            sid, chat_id = created["session"]["id"], created["chat"]["id"]
            until("the sandbox", lambda: httpx.get(f"{srv.url}/api/sessions/{sid}", headers=h)
                  .json()["session"]["lifecycleState"] == "active", timeout=60)  # fmt: skip
            message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}
            chat = {"id": chat_id, "sessionId": sid, "model": f"openai/{name}",
                    "messages": [message]}  # fmt: skip
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.stream("POST", f"{srv.url}/api/chat", json=chat, headers=h, timeout=60) as c,
            ):
                run = c.headers["x-workflow-run-id"]
                c.read()
            assert srv.process.wait(30) == -9, "the fault point was not reached"
        finally:
            stop_server(srv)
        pushed = r.sha("main")
        assert pushed != before, "the first attempt pushed"
        srv = start_server(sandbox_data_dir, backend.url, **env)
        try:
            until("the recovered turn", lambda: httpx.get(f"{srv.url}/api/chat/runs/{run}",
                  headers=h).json()["status"] == "completed", timeout=60)  # fmt: skip
            detail = httpx.get(f"{srv.url}/api/sessions/{sid}/chats/{chat_id}", headers=h).json()
            (part,) = [p for p in detail["messages"][-1]["parts"] if p["type"] == "data-commit"]
            state = httpx.get(f"{srv.url}/api/sessions/{sid}/git/status", headers=h).json()
        finally:
            stop_server(srv)
        assert part["data"] == {
            "status": "success", "commitSha": pushed, "message": "feat: greet",
            "branch": "main", "filesChanged": 1, "pushed": True, "remoteUrl": r.url,
        }  # fmt: skip
        assert r.sha("main") == pushed and state["headSha"] == pushed
        assert (state["ahead"], state["behind"]) == (0, 0)
        assert git(r.bare, "rev-list", "--count", f"{before}..main").strip() == "1"
