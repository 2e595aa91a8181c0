"""``POST …/git/push``: the sandbox's branch reaches the remote through the host, never forced,
and the token never leaves the host (real git, real bubblewrap sandboxes, loopback remotes)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.workspace import remote
from tests.agent.conftest import Agents, AgentsFactory
from tests.support.git_server import git, git_http
from tests.support.model_server import Call, Text, ToolCalls
from tests.workspace.repos import TOKEN, create, daemon_remote, forge_root, out, run, settled

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
COMMIT = (
    "printf '%s\\n' \"$1\" >> notes.txt && git add -A && "
    'git -c user.name=Agent -c user.email=agent@example.com commit -q -m "$1" && '
    "git rev-parse HEAD"
)


def commit(a: Agents, s: dict[str, Any], message: str) -> str:
    script = f"set -- {json.dumps(message)}; {COMMIT}"
    return out(a, s, script).strip()


def push(a: Agents, sid: str) -> Any:
    return a.client.post(f"/api/sessions/{sid}/git/push", headers=a.account.headers)


def status(a: Agents, s: dict[str, Any]) -> str:
    return out(a, s, "git status -sb | head -1").strip()


def test_commit_and_push_lands_in_the_remote(agents: AgentsFactory, tmp_path: Path) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s = settled(a, create(a, cloneUrl=r.url)["id"])
        sha = commit(a, s, "add notes")
        assert status(a, s) == "## main...origin/main [ahead 1]"
        done = push(a, s["id"])
        assert done.status_code == 200, done.text
        assert done.json() == {
            "branch": "main", "pushed": True, "commitSha": sha, "remoteUrl": r.url,
        }  # fmt: skip
        assert r.sha("main") == sha
        assert git(r.bare, "show", "main:notes.txt") == "add notes\n"
        assert status(a, s) == "## main...origin/main"  # origin/main follows the push
        again = push(a, s["id"])
        assert again.status_code == 200 and again.json()["pushed"] is False
        assert run(a, s, f"test -e {remote.BUNDLE}").exit_code == 1  # no bundle left behind


def test_a_new_branch_is_created_on_the_remote_and_tracked(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s = settled(a, create(a, cloneUrl=r.url, branch="feature", isNewBranch=True)["id"])
        branch = s["branch"]
        first = push(a, s["id"])  # nothing new: the branch is made at its base on the remote
        assert first.status_code == 200, first.text
        assert first.json()["pushed"] is True and r.sha(branch) == r.sha("feature")
        sha = commit(a, s, "on the new branch")
        assert status(a, s) == f"## {branch}...origin/{branch} [ahead 1]"
        assert push(a, s["id"]).json() == {
            "branch": branch, "pushed": True, "commitSha": sha, "remoteUrl": r.url,
        }  # fmt: skip
        assert r.sha(branch) == sha and r.sha("feature") != sha


def test_a_non_fast_forward_push_is_409_and_changes_nothing(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s = settled(a, create(a, cloneUrl=r.url)["id"])
        (r.work / "other.txt").write_text("someone else\n")
        git(r.work, "add", "-A")
        git(r.work, "commit", "-q", "-m", "theirs")
        git(r.work, "push", "-q", "origin", "main")
        theirs = r.sha("main")
        commit(a, s, "ours")
        rejected = push(a, s["id"])
        assert rejected.status_code == 409, rejected.text
        assert rejected.json() == {"status": "error", "error": remote.NON_FAST_FORWARD}
        assert "the remote branch has commits this session does not have" in (
            remote.NON_FAST_FORWARD.lower()
        )
        assert r.sha("main") == theirs


@sqlite_only
def test_detached_head_unborn_and_no_repository_are_409(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s = settled(a, create(a, cloneUrl=r.url)["id"])
        out(a, s, "git checkout -q --detach HEAD")
        detached = push(a, s["id"])
        assert detached.status_code == 409 and "detached" in detached.json()["error"]
        out(a, s, "git checkout -q --orphan empty")
        unborn = push(a, s["id"])
        assert unborn.status_code == 409 and "no commits" in unborn.json()["error"]
    plain = settled(a, create(a)["id"])
    none = push(a, plain["id"])
    assert none.status_code == 409
    assert none.json() == {"status": "error", "error": remote.NO_REPOSITORY}


@sqlite_only
def test_objects_git_would_refuse_are_not_pushed(agents: AgentsFactory, tmp_path: Path) -> None:
    """A commit with a malformed author (written with ``hash-object --literally``): the
    host's ``index-pack --strict`` refuses it before anything is pushed."""
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s = settled(a, create(a, cloneUrl=r.url)["id"])
        out(a, s, (
            "tree=$(git rev-parse 'HEAD^{tree}'); parent=$(git rev-parse HEAD); "
            "bad=$(printf 'tree %s\\nparent %s\\nauthor bad <a@b 1 +0000\\n"
            "committer a <a@b> 1 +0000\\n\\nmsg\\n' $tree $parent "
            "| git hash-object -t commit -w --literally --stdin); git update-ref HEAD $bad"
        ))  # fmt: skip
        before = r.sha("main")
        refused = push(a, s["id"])
        assert refused.status_code == 409, refused.text
        assert "failed git's checks" in refused.json()["error"]
        assert "badEmail" in refused.json()["error"]
        assert r.sha("main") == before


@sqlite_only
def test_a_lost_bare_repository_is_cloned_again_and_delete_removes_it(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        s = settled(a, create(a, cloneUrl=r.url)["id"])
        bare = remote.bare_path(a.settings, s["id"])
        assert bare.is_dir() and oct(bare.parent.stat().st_mode & 0o777) == "0o700"
        shutil.rmtree(bare)
        sha = commit(a, s, "after a host change")
        assert push(a, s["id"]).json()["pushed"] is True and r.sha("main") == sha
        assert bare.is_dir()
        deleted = a.client.delete(f"/api/sessions/{s['id']}", headers=a.account.headers)
        assert deleted.status_code == 200
        assert not bare.exists()
        assert list(bare.parent.iterdir()) == []


def test_the_token_never_leaves_the_host(
    agents: AgentsFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Clone, a turn whose tool dumps the repository's config and the environment, a commit
    and a push, all over HTTP with the account's token: the token is in no API response, no
    stream chunk, no log record, no model request, no workspace file and no database row (it
    travels in git's environment; the forge sees it in the header only)."""
    caplog.set_level(logging.DEBUG)
    root = forge_root(tmp_path)
    with git_http(root, TOKEN) as forge:
        a = agents(forge_base_url=forge.base)
        seen: list[str] = []

        def call(method: str, path: str, **kw: Any) -> Any:
            r = a.client.request(method, path, headers=a.account.headers, **kw)
            seen.append(r.text)
            return r

        assert call("PUT", "/api/account/forge-token", json={"token": TOKEN}).status_code == 200
        made = call("POST", "/api/sessions", json={"repoOwner": "acme", "repoName": "widgets"})
        sid, chat_id = made.json()["session"]["id"], made.json()["chat"]["id"]
        s = settled(a, sid)
        assert s["lifecycleState"] == "active", s
        model = a.script([
            ToolCalls([Call("bash", {"command": "cat .git/config; env; git remote -v"})]),
            Text("done"),
        ])  # fmt: skip
        chunks, _ = a.turn(sid, chat_id, "show me the config", model=model)
        seen.append(json.dumps(chunks))
        sha = commit(a, s, "by the agent")
        pushed = call("POST", f"/api/sessions/{sid}/git/push")
        assert pushed.status_code == 200 and pushed.json()["commitSha"] == sha, pushed.text
        assert git(root / "acme" / "widgets.git", "rev-parse", "main").strip() == sha
        for path in (f"/api/sessions/{sid}", f"/api/sessions/{sid}/chats/{chat_id}",
                     f"/api/sessions/{sid}/sandbox", "/api/account/forge-token"):  # fmt: skip
            assert call("GET", path).status_code == 200
        requests = a.model.requests(model.split("/", 1)[1])
        assert requests and "url = " in json.dumps(requests)  # the config did reach the model
        host = a.settings.data_dir / "repos" / f"{sid}.git"

        assert forge.requests and {h.get("Authorization") for _, _, h in forge.requests} == {
            forge.expected
        }
        assert any("git-receive-pack" in p for _, p, _ in forge.requests)
        for text in [*seen, caplog.text, json.dumps(requests), (host / "config").read_text()]:
            assert TOKEN not in text
            assert forge.expected.split()[1] not in text  # nor its Basic form
        assert out(a, s, f"grep -r -a -l -F -e {TOKEN} . || true").strip() == ""
        for db_file in [*a.settings.data_dir.glob("*.sqlite*"), *a.backend.data_dir.glob("*")]:
            if db_file.is_file():
                assert TOKEN.encode() not in db_file.read_bytes(), db_file
        assert not re.search(r"x-access-token:", caplog.text)
