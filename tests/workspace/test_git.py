"""Git in the sandbox: status, commit, discard and auto-commit, end to end.

Real app, DBOS and bubblewrap sandboxes; real git inside them. Until sessions clone their
repository on the host, each test makes the session's repository itself, in the sandbox: a
``main`` branch with two files, and a "remote" that is a bare repository in the workspace
(``/workspace/.remote.git``, kept out of the tree by ``.git/info/exclude``; the sandbox's
``/tmp`` is a new tmpfs for every command), set as ``origin`` and ``main``'s upstream.
The model is the scripted STAND-IN (``tests/support/model_server.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from agent_sessions.sandbox import ExecResult, provider_from_settings
from agent_sessions.store.models import SessionRow
from agent_sessions.workspace import remote
from agent_sessions.workspace.commit_message import FALLBACK, sanitize
from agent_sessions.workspace.git import parse_status
from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.protocol import check_protocol
from tests.agent.test_control import Background
from tests.conftest import Backend, make_account, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import Call, Fail, ModelServer, Text, ToolCalls
from tests.support.waiting import until

SETUP = r"""set -e
git init -q -b main .
git config user.name Setup && git config user.email setup@example.com
printf 'one\n' > a.txt && printf 'two\n' > b.txt
git add -A && git commit -q -m initial
git init -q --bare -b main .remote.git
echo /.remote.git/ >> .git/info/exclude
git remote add origin "$PWD/.remote.git"
git push -q -u origin main 2>/dev/null
"""


def sh(h: Agents, sid: str, script: str) -> ExecResult:
    """Run ``script`` in the session's sandbox (as the agent's bash would); must succeed."""
    r = h.client.get(f"/api/sessions/{sid}", headers=h.account.headers)
    state = r.json()["session"]["sandboxState"]

    async def run() -> ExecResult:
        box = await provider_from_settings(h.settings).connect(state)
        return await box.exec(script)

    result = asyncio.run(run())
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def repo_session(h: Agents, **session: Any) -> tuple[str, str]:
    created = h.new_session(**session)
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    sh(h, sid, SETUP)
    return sid, chat_id


def get(h: Agents, sid: str, path: str) -> Any:
    return h.client.get(f"/api/sessions/{sid}{path}", headers=h.account.headers)


def post(h: Agents, sid: str, path: str, body: Any = None) -> Any:
    return h.client.post(f"/api/sessions/{sid}{path}", json=body, headers=h.account.headers)


def status(h: Agents, sid: str) -> dict[str, Any]:
    r = get(h, sid, "/git/status")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def counts(s: dict[str, Any]) -> tuple[int, int, int, int]:
    return s["staged"], s["unstaged"], s["untracked"], s["conflicted"]


# --- status --------------------------------------------------------------------------------------


def test_status_counts_branch_upstream_ahead_behind_and_detached(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid = created["session"]["id"]
    sh(h, sid, "rm -rf .git")  # every session starts as a repository; the agent may remove it
    r = get(h, sid, "/git/status")
    assert r.status_code == 409, r.text
    assert r.json() == {"status": "error", "error": "The workspace has no git repository"}

    sh(h, sid, SETUP)
    clean = status(h, sid)
    head = sh(h, sid, "git rev-parse HEAD").stdout.strip()
    assert clean == {
        "branch": "main", "headSha": head, "detached": False, "upstream": "origin/main",
        "ahead": 0, "behind": 0, "staged": 0, "unstaged": 0, "untracked": 0, "conflicted": 0,
        "hasUncommittedChanges": False, "hasUnpushedCommits": False, "truncated": False,
    }  # fmt: skip

    # staged (a.txt, and a rename counted once), unstaged (b.txt), untracked (2 files)
    sh(h, sid, "echo more >> a.txt && git add a.txt && echo more >> b.txt"
               " && git mv b.txt c.txt && echo b2 > b.txt"
               " && echo new > 'new file.txt' && mkdir -p d && echo e > d/e.txt")  # fmt: skip
    s = status(h, sid)
    assert counts(s) == (2, 1, 3, 0), s  # staged: a.txt, b→c; unstaged: c.txt; untracked: 3
    assert s["hasUncommittedChanges"] and not s["hasUnpushedCommits"]

    # two local commits ahead; the remote moves by one commit of its own: behind 1
    sh(h, sid, "git add -A && git commit -q -m one && echo x > x.txt && git add x.txt"
               " && git commit -q -m two"
               " && git clone -q .remote.git /tmp/other && cd /tmp/other"
               " && git -c user.name=O -c user.email=o@example.com commit -q --allow-empty -m 3"
               " && git push -q origin main && cd /workspace && git fetch -q origin")  # fmt: skip
    s = status(h, sid)
    assert (s["ahead"], s["behind"], s["hasUnpushedCommits"]) == (2, 1, True), s
    assert counts(s) == (0, 0, 0, 0) and not s["hasUncommittedChanges"]

    sh(h, sid, "git checkout -q --detach")
    s = status(h, sid)
    assert (s["branch"], s["detached"], s["upstream"]) == (None, True, None), s
    assert s["hasUnpushedCommits"], "commits no remote branch holds are unpushed"

    # a branch without upstream: unpushed = commits on no remote-tracking branch
    sh(h, sid, "git checkout -q --no-track -b agent/feature origin/main"
               " && git commit -q --allow-empty -m f")  # fmt: skip
    s = status(h, sid)
    assert (s["branch"], s["upstream"], s["hasUnpushedCommits"]) == ("agent/feature", None, True)


def test_status_conflicts_are_counted(agents: AgentsFactory) -> None:
    h = agents()
    sid, _ = repo_session(h)
    sh(h, sid, "git checkout -q -b side && echo side > a.txt && git commit -qam side"
               " && git checkout -q main && echo main > a.txt && git commit -qam main"
               " && (git merge -q side >/dev/null 2>&1 || true)")  # fmt: skip
    s = status(h, sid)
    assert counts(s) == (0, 0, 0, 1) and s["hasUncommittedChanges"], s


def test_parse_status_reads_nul_separated_records_with_any_path() -> None:
    """Paths with spaces, newlines and a rename's source record do not confuse the counts."""
    out = "\0".join([
        "# branch.oid 0123", "# branch.head main", "# branch.upstream origin/main",
        "# branch.ab +3 -1",
        "1 M. N... 100644 100644 100644 aaa bbb line\nbreak.txt",
        "2 R. N... 100644 100644 100644 aaa bbb R100 new name", "1 .M fake record",
        "u UU N... 1 2 3 4 a b c conflicted", "? un\ntracked", "# as.unpushed 3", "",
    ])  # fmt: skip
    s = parse_status(out)
    assert (s.branch, s.head_sha, s.upstream) == ("main", "0123", "origin/main")
    assert (s.ahead, s.behind, s.unpushed) == (3, 1, 3)
    assert (s.staged, s.unstaged, s.untracked, s.conflicted) == (2, 0, 1, 1)


# --- commit --------------------------------------------------------------------------------------


def test_commit_with_a_message_as_the_configured_identity(agents: AgentsFactory) -> None:
    h = agents(git_author_name="Agent Bot", git_author_email="bot@example.com")
    sid, _ = repo_session(h)
    sh(h, sid, "echo changed > a.txt && echo new > c.txt && mkdir -p .agent-sessions/skills/s"
               " && echo skill > .agent-sessions/skills/s/SKILL.md")  # fmt: skip
    r = post(h, sid, "/git/commit", {"message": "feat: change a, add c\n\nWith a body."})
    assert r.status_code == 200, r.text
    out = r.json()
    log = sh(h, sid, "git log -1 --format='%H|%an <%ae>|%cn <%ce>|%B'").stdout.strip()
    assert log == (f"{out['commitSha']}|Agent Bot <bot@example.com>|Agent Bot <bot@example.com>|"
                   "feat: change a, add c\n\nWith a body.")  # fmt: skip
    assert out == {"commitSha": out["commitSha"], "branch": "main", "filesChanged": 2,
                   "message": "feat: change a, add c\n\nWith a body."}  # fmt: skip
    # the installed skills stay out of the commit, and on disk
    tracked = sh(h, sid, "git ls-files; cat .agent-sessions/skills/s/SKILL.md").stdout
    assert tracked == "a.txt\nb.txt\nc.txt\nskill\n"
    assert sh(h, sid, "git config --get user.name").stdout == "Setup\n", "repo config untouched"
    s = status(h, sid)
    assert (s["ahead"], s["hasUnpushedCommits"]) == (1, True)

    r = post(h, sid, "/git/commit", {"message": "again"})
    assert r.status_code == 409
    assert r.json() == {"status": "error", "error": "Nothing to commit"}
    r = post(h, sid, "/git/commit", {"message": "  "})
    assert r.status_code == 400, r.text


def test_commit_message_written_by_the_chats_model(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script([Text("`feat: add the greeting module`\nIt greets people.")])
    sid, chat_id = repo_session(h, title="Greet the user")
    r = h.client.patch(f"/api/sessions/{sid}/chats/{chat_id}", json={"modelId": model},
                       headers=h.account.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    sh(h, sid, "printf 'def greet():\\n    return \"hello there\"\\n' > greeting.py")
    r = post(h, sid, "/git/commit", {"chatId": chat_id})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "feat: add the greeting module"
    assert sh(h, sid, "git log -1 --format=%B").stdout.strip() == "feat: add the greeting module"
    (request,) = h.model.requests(model.split("/", 1)[1])
    text = json.dumps(request["messages"])
    assert "conventional commit" in text and "Greet the user" in text
    assert "greeting.py | 2 ++" in text, "the diff stat"
    assert '+    return \\"hello there\\"' in text, "the staged diff"


def test_commit_message_from_the_default_model_and_long_answers_cut(
    agents: AgentsFactory,
) -> None:
    writer = f"writer-{uuid.uuid4().hex[:8]}"
    h = agents(default_model=f"openai/{writer}")
    h.model.script(writer, [Text("fix: " + "make the thing work properly " * 5)])
    sid, _ = repo_session(h)
    sh(h, sid, "echo fix >> a.txt")
    r = post(h, sid, "/git/commit")
    assert r.status_code == 200, r.text
    message = r.json()["message"]
    assert message.startswith("fix: make the thing work") and len(message) <= 72, message
    assert len(h.model.requests(writer)) == 1


def test_fallback_message_when_the_model_fails_or_is_not_configured(
    agents: AgentsFactory,
) -> None:
    h = agents()
    failing = h.script([Fail(400, "scripted refusal")])
    sid, chat_id = repo_session(h)
    r = h.client.patch(f"/api/sessions/{sid}/chats/{chat_id}", json={"modelId": failing},
                       headers=h.account.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    sh(h, sid, "echo one >> a.txt")
    r = post(h, sid, "/git/commit", {"chatId": chat_id})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == FALLBACK
    assert len(h.model.requests(failing.split("/", 1)[1])) == 1, "the model was asked"

    # a model whose provider has no key here: no request at all, the fallback
    r = h.client.patch(f"/api/sessions/{sid}/chats/{chat_id}",
                       json={"modelId": "anthropic/claude-haiku-4.5"},
                       headers=h.account.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    sh(h, sid, "echo two >> a.txt")
    r = post(h, sid, "/git/commit", {"chatId": chat_id})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == FALLBACK
    r = post(h, sid, "/git/commit", {"chatId": "no-such-chat"})
    assert r.status_code == 404, r.text


def test_sanitize_keeps_one_clean_line() -> None:
    assert sanitize('"feat: x"') == "feat: x"
    assert sanitize("\n\n**Commit message:** `fix(api): y`\nbody") == "fix(api): y"
    assert sanitize("feat:\ta\x07b\x1b[31mc\u2028second line") == "feat: a b [31mc"
    assert sanitize("x" * 100) == "x" * 72
    assert sanitize(" \n ``` \n") is None


# --- discard -------------------------------------------------------------------------------------


def test_discard_one_file_tracked_staged_and_untracked(agents: AgentsFactory) -> None:
    h = agents()
    sid, _ = repo_session(h)
    sh(h, sid, "echo staged > a.txt && git add a.txt && echo unstaged >> a.txt"
               " && echo added > added.txt && git add added.txt && echo u > 'un tracked.txt'"
               " && rm b.txt")  # fmt: skip
    r = post(h, sid, "/discard-uncommitted", {"filePath": "a.txt"})
    assert r.status_code == 200, r.text
    assert r.json()["discarded"] == "a.txt"
    assert counts(r.json()["gitStatus"]) == (1, 1, 1, 0)  # added.txt; b.txt deleted; untracked
    assert sh(h, sid, "cat a.txt").stdout == "one\n"

    for path in ("added.txt", "./un tracked.txt", "b.txt"):
        r = post(h, sid, "/discard-uncommitted", {"filePath": path})
        assert r.status_code == 200, (path, r.text)
    assert r.json()["discarded"] == "b.txt"
    assert not r.json()["gitStatus"]["hasUncommittedChanges"], r.json()
    assert sh(h, sid, "ls").stdout == "a.txt\nb.txt\n"

    r = post(h, sid, "/discard-uncommitted", {"filePath": "nothing-here.txt"})
    assert r.status_code == 404, r.text


def test_discard_everything_keeps_ignored_files_and_installed_skills(
    agents: AgentsFactory,
) -> None:
    h = agents()
    sid, _ = repo_session(h)
    sh(h, sid, "echo '*.log' > .gitignore && git add .gitignore && git commit -qm ignore"
               " && echo x > a.txt && git add a.txt && echo y > b.txt && mkdir -p new/deep"
               " && echo z > new/deep/z.txt && echo s > staged-new.txt && git add staged-new.txt"
               " && echo keep > build.log && mkdir -p .agent-sessions/skills/s"
               " && echo skill > .agent-sessions/skills/s/SKILL.md")  # fmt: skip
    r = post(h, sid, "/discard-uncommitted", {})
    assert r.status_code == 200, r.text
    assert r.json()["discarded"] is None
    assert not r.json()["gitStatus"]["hasUncommittedChanges"], r.json()
    listing = sh(h, sid, "ls -A; cat a.txt b.txt .agent-sessions/skills/s/SKILL.md").stdout
    assert listing == ".agent-sessions\n.git\n.gitignore\n.remote.git\na.txt\nb.txt\nbuild.log\n" \
                      "one\ntwo\nskill\n"  # fmt: skip
    r = post(h, sid, "/discard-uncommitted")  # no body: everything, nothing left to do
    assert r.status_code == 200, r.text


def test_discard_refuses_paths_that_leave_the_tree(agents: AgentsFactory) -> None:
    h = agents()
    sid, _ = repo_session(h)
    sh(h, sid, "echo changed > a.txt")
    for path in ("../a.txt", "/workspace/a.txt", "x/../../a.txt", ".git/config", ".git",
                 ".", "./", ".agent-sessions/skills", "a\x00b", ""):  # fmt: skip
        r = post(h, sid, "/discard-uncommitted", {"filePath": path})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["status"] == "error" and "filePath" in r.json()["error"], r.json()
    assert sh(h, sid, "cat a.txt").stdout == "changed\n", "nothing was discarded"


def test_discard_is_409_while_a_turn_is_live(agents: AgentsFactory) -> None:
    h = agents()
    gate = threading.Event()
    model = h.script([Text("working", hold=gate)])
    sid, chat_id = repo_session(h)
    sh(h, sid, "echo changed > a.txt")
    bg = Background(h, sid, chat_id, "go", model)
    try:
        bg.wait_for('"type":"start"')
        for body in ({}, {"filePath": "a.txt"}):
            r = post(h, sid, "/discard-uncommitted", body)
            assert r.status_code == 409, r.text
            assert "turn is running" in r.json()["error"]
        assert sh(h, sid, "cat a.txt").stdout == "changed\n"
    finally:
        gate.set()
    h.wait_run(bg.headers["x-workflow-run-id"])
    r = post(h, sid, "/discard-uncommitted", {"filePath": "a.txt"})
    assert r.status_code == 200, r.text
    assert sh(h, sid, "cat a.txt").stdout == "one\n"


# --- auto-commit after a turn --------------------------------------------------------------------


def _auto_commit_on(h: Agents, sid: str) -> None:
    with h.backend.db.write() as s:
        s.execute(update(SessionRow).where(SessionRow.id == sid).values(auto_commit_push=True))


WRITE = Call("write", {"filePath": "hello.txt", "content": "hello\n"})


def _writes_then(message: str, *, commit_message: str, calls: tuple[Call, ...] = (WRITE,)) -> Any:
    """A script: the tool ``calls`` (write ``hello.txt``), then say ``message``; asked for a
    commit message (its own request, told by its instructions) it answers ``commit_message``."""

    def first(request: dict[str, Any]) -> Text | ToolCalls:
        if "You write git commit messages" in json.dumps(request["messages"]):
            return Text(commit_message)
        return ToolCalls(list(calls))

    return [first, Text(message)]


def _commit_parts(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in chunks if c["type"] == "data-commit"]


def test_auto_commit_after_a_turn_that_changed_files(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script(_writes_then("done", commit_message="feat: add hello.txt"))
    sid, chat_id = repo_session(h)
    _auto_commit_on(h, sid)
    chunks, _ = h.turn(sid, chat_id, "write hello", model=model)
    check_protocol(chunks)
    head = sh(h, sid, "git rev-parse HEAD; git log -1 --format=%B; git show --name-only --format=")
    sha, subject, _, changed = head.stdout.split("\n", 3)
    assert (subject, changed) == ("feat: add hello.txt", "hello.txt\n")
    parts = _commit_parts(chunks)
    assert [p["data"]["status"] for p in parts] == ["pending", "success"], parts
    success = {
        "status": "success",
        "commitSha": sha,
        "message": "feat: add hello.txt",
        "branch": "main",
        "filesChanged": 1,
        "pushed": False,
        "pushSkipped": remote.NO_REPOSITORY,
    }  # no cloneUrl: the host has no remote
    assert parts[-1] == {"type": "data-commit", "id": "commit", "data": success}
    stored = h.chat(sid, chat_id)["messages"][-1]
    assert [p for p in stored["parts"] if p["type"] == "data-commit"] == [parts[-1]]
    assert not status(h, sid)["hasUncommittedChanges"]

    # the next turn loads that message as history: the part is no trouble to the model
    chunks, _ = h.turn(sid, chat_id, "again", model=h.script([Text("nothing to change")]))
    assert not _commit_parts(chunks)
    assert sh(h, sid, "git rev-parse HEAD").stdout.strip() == sha, "no commit: nothing changed"


def test_no_auto_commit_when_off_or_the_turn_was_stopped(agents: AgentsFactory) -> None:
    h = agents()
    sid, chat_id = repo_session(h)
    before = sh(h, sid, "git rev-parse HEAD").stdout
    model = h.script(_writes_then("done", commit_message="feat: never"))
    chunks, _ = h.turn(sid, chat_id, "write", model=model)  # the setting is off
    assert not _commit_parts(chunks)
    assert status(h, sid)["untracked"] == 1
    sh(h, sid, "rm hello.txt")

    _auto_commit_on(h, sid)
    wait = Call("bash", {"command": "sleep 60"})
    model = h.script(_writes_then("never said", commit_message="feat: never", calls=(WRITE, wait)))
    other = post(h, sid, "/chats", {}).json()["chat"]["id"]  # the script counts from its start
    bg = Background(h, sid, other, "write and wait", model)
    bg.wait_for('"toolName":"bash","input"')
    until("the file written", lambda: status(h, sid)["untracked"] == 1)
    r = h.client.post(f"/api/chat/{other}/stop", headers=h.account.headers)
    assert r.json() == {"success": True, "stopped": True}
    chunks = bg.chunks()
    check_protocol(chunks)
    assert h.wait_run(bg.headers["x-workflow-run-id"])["status"] == "cancelled"
    assert not _commit_parts(chunks)
    assert sh(h, sid, "git rev-parse HEAD").stdout == before
    assert status(h, sid)["untracked"] == 1, "the stopped turn's change is left uncommitted"


def test_auto_commit_without_a_repository_is_skipped_and_says_why(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    sh(h, sid, "rm -rf .git")  # every session starts as a repository; the agent may remove it
    _auto_commit_on(h, sid)
    model = h.script(_writes_then("done", commit_message="feat: x"))
    chunks, _ = h.turn(sid, chat_id, "write", model=model)
    check_protocol(chunks)
    assert [p["data"] for p in _commit_parts(chunks)] == [
        {"status": "skipped", "error": "The workspace has no git repository"}
    ]
    assert h.wait_run(chunks[-1]["messageMetadata"]["runId"])["status"] == "completed"


@pytest.mark.slow
def test_kill_9_after_the_commit_then_restart_reports_it_once(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer
) -> None:
    """The server dies right after the auto-commit, before its step is recorded: the
    recovered turn finds the tree clean and its own pending part, and reports HEAD's commit
    instead of committing again or leaving the part pending."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"crash-commit-{uuid.uuid4().hex[:8]}"
    setup = Call("bash", {"command": SETUP + "echo change >> a.txt\n"})
    model_server.script(name, _writes_then("done", commit_message="fix: change a", calls=(setup,)))
    env = {
        "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model_server.base_url,
        "AGENT_SESSIONS_SANDBOX_UID_BASE": str(UID_BASE + 120),
        "AGENT_SESSIONS_SANDBOX_UID_COUNT": "10",
    }  # fmt: skip
    srv = start_server(sandbox_data_dir, backend.url, **env,
                       AGENT_SESSIONS_FAULT_POINT="auto-commit.committed")  # fmt: skip
    h = make_account(backend.db).headers
    try:
        created = httpx.post(f"{srv.url}/api/sessions", json={}, headers=h).json()
        sid, chat_id = created["session"]["id"], created["chat"]["id"]
        until("the sandbox", lambda: httpx.get(f"{srv.url}/api/sessions/{sid}", headers=h)
              .json()["session"]["lifecycleState"] == "active", timeout=60)  # fmt: skip
        with backend.db.write() as s:
            s.execute(update(SessionRow).where(SessionRow.id == sid).values(auto_commit_push=True))
        message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}
        body = {"id": chat_id, "sessionId": sid, "model": f"openai/{name}", "messages": [message]}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("POST", f"{srv.url}/api/chat", json=body, headers=h, timeout=60) as r,
        ):
            run_id = r.headers["x-workflow-run-id"]
            r.read()
        assert srv.process.wait(30) == -9, "the fault point was not reached"
    finally:
        stop_server(srv)
    srv = start_server(sandbox_data_dir, backend.url, **env)
    try:
        until("the recovered turn", lambda: httpx.get(f"{srv.url}/api/chat/runs/{run_id}",
              headers=h).json()["status"] == "completed", timeout=60)  # fmt: skip
        detail = httpx.get(f"{srv.url}/api/sessions/{sid}/chats/{chat_id}", headers=h).json()
        (part,) = [p for p in detail["messages"][-1]["parts"] if p["type"] == "data-commit"]
        state = httpx.get(f"{srv.url}/api/sessions/{sid}/git/status", headers=h).json()
        assert part["data"] == {
            "status": "success", "commitSha": state["headSha"], "message": "fix: change a",
            "branch": "main", "filesChanged": 0, "pushed": False,
            "pushSkipped": remote.NO_REPOSITORY,
        }, "files unknown after a restart: 0"  # fmt: skip
        assert (state["ahead"], state["hasUncommittedChanges"]) == (1, False), "one commit"
    finally:
        stop_server(srv)
