"""The workspace's diff (``GET …/diff``, ``GET …/diff/cached``) and the cached-diff refresh after
turns and before hibernation: real app, DBOS, bubblewrap sandboxes and git.

Each test makes its repository inside the session's sandbox with one script (the workspace is
emptied first, whatever provisioning left there). A remote is a bare repository inside ``.git``
(the sandbox has no network), which is enough for ``refs/remotes/origin/*`` to move.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS

from agent_sessions.lifecycle.context import current
from agent_sessions.workspace import diff as diff_module
from tests.agent.conftest import Agents, AgentsFactory
from tests.support.model_server import Call, Text, ToolCalls

FRESH_REPO = """set -e
find . -mindepth 1 -delete
git init -q -b main
git config user.name Test
git config user.email test@example.com
"""
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""For tests of the diff itself: the database only stores the result (both backends are
covered by the cache tests)."""


def _exec(h: Agents, sid: str, script: str) -> str:
    """Run ``script`` in the session's sandbox (it must succeed); its stdout."""
    session = h.client.get(f"/api/sessions/{sid}", headers=h.account.headers).json()["session"]

    async def run() -> str:
        # On the app's event loop, with its provider: what the sandbox starts (its network
        # namespace's helpers) belongs to the app, not to a loop of the test's own.
        box = await current().provider("local").connect(session["sandboxState"])
        result = await box.exec(script)
        assert result.exit_code == 0, result
        return result.stdout

    return h.client.portal.call(run)  # type: ignore[union-attr]


def _session(h: Agents, repo_script: str | None = None) -> tuple[str, str]:
    created = h.new_session()
    sid = created["session"]["id"]
    if repo_script is not None:
        _exec(h, sid, FRESH_REPO + repo_script)
    return sid, created["chat"]["id"]


def _turn(h: Agents, sid: str, chat: str, model: str) -> None:
    """A turn to its very end: completed, and its workflow returned, so that the cached-diff
    refresh after ``_finish`` is over too (the test must not end with it mid-exec)."""
    _, headers = h.turn(sid, chat, "go", model=model)
    run_id = headers["x-workflow-run-id"]
    assert h.wait_run(run_id)["status"] == "completed"
    assert DBOS.retrieve_workflow(run_id).get_result() == "completed"


def _new_chat(h: Agents, sid: str) -> str:
    """Another chat of the session: the stand-in's script starts over in it."""
    r = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    assert r.status_code == 200, r.text
    return r.json()["chat"]["id"]  # type: ignore[no-any-return]


def _diff(h: Agents, sid: str) -> dict[str, Any]:
    r = h.client.get(f"/api/sessions/{sid}/diff", headers=h.account.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _cached(h: Agents, sid: str) -> Any:
    return h.client.get(f"/api/sessions/{sid}/diff/cached", headers=h.account.headers)


def _session_row(h: Agents, sid: str) -> dict[str, Any]:
    r = h.client.get(f"/api/sessions/{sid}", headers=h.account.headers)
    return r.json()["session"]  # type: ignore[no-any-return]


def _by_path(diff: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in diff["files"]}


EVERY_KIND = r"""
printf 'one\ntwo\nthree\n' > keep.txt
printf 'bye\n' > gone.txt
seq 1 50 > 'old name.txt'
printf '\000\001\002' > image.bin
printf '{"lockfileVersion": 3}\n' > package-lock.json
mkdir -p web gen dist
printf 'a\n' > web/app.min.js
printf 'gen/** linguist-generated\ndist/keep.js linguist-generated=false\n' > .gitattributes
printf 'x\n' > gen/schema.ts
printf 'k\n' > dist/keep.js
printf 'u\n' > 'with space.txt'
git add -A && git commit -q -m base
printf 'one\nTWO\nthree\nfour\n' > keep.txt
git rm -q gone.txt
mv 'old name.txt' 'new näme.txt' && echo 51 >> 'new näme.txt'
printf '\000\001\003' > image.bin
printf '{"lockfileVersion": 3, "x": 1}\n' > package-lock.json
printf 'b\n' > web/app.min.js
printf 'y\n' > gen/schema.ts
printf 'K\n' > dist/keep.js
printf 'U\n' > 'with space.txt'
printf 'n\n' > "$(printf 'new\nline.txt')"
printf 'c\n' > 'ünï cødé.txt' && git add 'ünï cødé.txt'
mkdir -p sub && printf 'deep\n' > sub/untracked.md
"""
# path: (status, oldPath, additions, deletions, binary, generated, has a diff)
EXPECTED = {
    "keep.txt": ("modified", None, 2, 1, False, False, True),
    "gone.txt": ("deleted", None, 0, 1, False, False, True),
    "new näme.txt": ("renamed", "old name.txt", 1, 0, False, False, True),
    "image.bin": ("modified", None, 0, 0, True, False, False),
    "package-lock.json": ("modified", None, 1, 1, False, True, False),
    "web/app.min.js": ("modified", None, 1, 1, False, True, False),
    "gen/schema.ts": ("modified", None, 1, 1, False, True, False),
    "dist/keep.js": ("modified", None, 1, 1, False, False, True),
    "with space.txt": ("modified", None, 1, 1, False, False, True),
    "new\nline.txt": ("added", None, 1, 0, False, False, True),
    "ünï cødé.txt": ("added", None, 1, 0, False, False, True),
    "sub/untracked.md": ("added", None, 1, 0, False, False, True),
}


@sqlite_only
def test_every_kind_of_change_and_awkward_paths(agents: AgentsFactory) -> None:
    h = agents()
    sid, _ = _session(h, EVERY_KIND)
    diff = _diff(h, sid)
    files = _by_path(diff)
    assert set(files) == set(EXPECTED)  # untracked files included, .gitattributes unchanged
    for path, (status, old, added, deleted, binary, generated, has_diff) in EXPECTED.items():
        f = files[path]
        got = (f["status"], f["oldPath"], f["additions"], f["deletions"], f["binary"],
               f["generated"], f["diff"] is not None)  # fmt: skip
        assert got == (status, old, added, deleted, binary, generated, has_diff), path
    assert "-two\n+TWO\n three\n+four\n" in files["keep.txt"]["diff"]
    assert files["keep.txt"]["diff"].startswith("diff --git a/keep.txt b/keep.txt\n")
    assert "+U\n" in files["with space.txt"]["diff"]
    assert (
        "+n\n" in files["new\nline.txt"]["diff"]
        and "new file mode" in files["new\nline.txt"]["diff"]
    )
    assert "rename from old name.txt" in files["new näme.txt"]["diff"]
    assert "+c\n" in files["ünï cødé.txt"]["diff"]
    assert diff["summary"] == {
        "totalFiles": len(EXPECTED),
        "totalAdditions": sum(e[2] for e in EXPECTED.values()),
        "totalDeletions": sum(e[3] for e in EXPECTED.values()),
    }
    assert diff["baseRef"] == "HEAD" and diff["truncated"] is False
    assert diff["baseCommit"] == _exec(h, sid, "git rev-parse HEAD").strip()

    # The live diff became the cached one, with the session's line counts.
    cached = _cached(h, sid)
    assert cached.status_code == 200
    body = cached.json()
    assert body.pop("cachedAt") and body == diff
    session = _session_row(h, sid)
    assert session["cachedDiff"] == diff and session["cachedDiffUpdatedAt"]
    assert (session["linesAdded"], session["linesRemoved"]) == (
        diff["summary"]["totalAdditions"],
        diff["summary"]["totalDeletions"],
    )
    # The user's index is left alone: untracked files stay untracked, staged ones staged.
    status = _exec(h, sid, "git status --porcelain=v1 -z --untracked-files=all | tr '\\0' '\\n'")
    assert "?? sub/untracked.md" in status.splitlines()
    assert "A  ünï cødé.txt" in status.splitlines()


BIG = """
seq 1 400 > big.txt
seq 1 30 > go.sum
printf 'a\\n' > small.txt
for i in $(seq 1 16); do seq 1 20 > "m$i.txt"; done
git add -A && git commit -q -m base
seq 1 400 | sed 's/$/ changed/' > big.txt
seq 2 31 > go.sum
printf 'b\\n' > small.txt
for i in $(seq 1 16); do seq 1 20 | sed 's/$/ x/' > "m$i.txt"; done
"""


@sqlite_only
def test_a_huge_diff_is_capped_and_keeps_every_count(agents: AgentsFactory) -> None:
    cap = 4096  # the smallest allowed: 1 KiB per file
    h = agents(diff_max_bytes=cap)
    sid, _ = _session(h, BIG)
    diff = _diff(h, sid)
    files = _by_path(diff)
    assert diff["truncated"] is True
    assert len(files) == 19
    assert (files["big.txt"]["additions"], files["big.txt"]["deletions"]) == (400, 400)
    # A lock file, known by name in a repository without any attributes file.
    go_sum = files["go.sum"]
    assert (go_sum["generated"], go_sum["diff"], go_sum["additions"], go_sum["deletions"]) == (
        True, None, 1, 1,
    )  # fmt: skip
    assert files["big.txt"]["diff"] is None  # over the per-file cap
    assert all(files[f"m{i}.txt"]["additions"] == 20 for i in range(1, 17))
    kept = [f for f in diff["files"] if f["diff"] is not None]
    assert sum(len(f["diff"].encode()) for f in kept) <= cap
    assert 0 < len(kept) < 17  # the total cap left some small files without hunks
    assert diff["summary"]["totalAdditions"] == 400 + 16 * 20 + 1 + 1


def test_a_stream_cut_in_the_sandbox_is_reported_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script caps its output (``head -c``); a cut anywhere must come back as
    ``truncated`` with whole records only. Run with bash on the host: the script's framing,
    not the sandbox, is under test (a 16 MiB stream is needed to reach the cap otherwise)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run = {"cwd": repo, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q", "-b", "main"], **run)  # type: ignore[call-overload]
    for i in range(40):
        (repo / f"f{i:02d}.txt").write_text("".join(f"{j}\n" for j in range(30)))
    subprocess.run(["git", "add", "-A"], **run)  # type: ignore[call-overload]
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "base"], **run
    )  # type: ignore[call-overload]
    for i in range(40):
        (repo / f"f{i:02d}.txt").write_text("".join(f"{j} changed\n" for j in range(30)))
    full = _run_script(repo, 1 << 20)
    assert full["truncated"] is False and all(f["diff"] for f in full["files"])
    # ~45 bytes a raw record (40 of them), ~550 a file's section: cut in the records, then in
    # the patch; (files listed, files counted, files with hunks) as ranges.
    cases = {1000: ((1, 39), (0, 0), (0, 0)), 9000: ((40, 40), (1, 39), (1, 39))}
    for room, expected in cases.items():
        monkeypatch.setattr(diff_module, "META_ROOM", room - 4 * (1 << 20))
        cut = _run_script(repo, 1 << 20)
        assert cut["truncated"] is True
        seen = (
            len(cut["files"]),
            sum(f["additions"] > 0 for f in cut["files"]),
            sum(f["diff"] is not None for f in cut["files"]),
        )
        assert all(lo <= n <= hi for n, (lo, hi) in zip(seen, expected, strict=True)), (room, seen)
        assert [f["path"] for f in cut["files"]] == [
            f["path"] for f in full["files"][: len(cut["files"])]
        ]
        for f, whole in zip(cut["files"], full["files"], strict=False):
            assert f["diff"] is None or f["diff"] == whole["diff"]
            assert f["additions"] in (0, whole["additions"])


def test_a_change_only_racy_git_can_see_is_not_missed(tmp_path: Path) -> None:
    """A file rewritten with the same size and mtime as the index recorded, in the second the
    index was written: only git's racy-file check (entry mtime >= the index file's) finds it.
    The script works on a copy of the index, which must keep the original's mtime (``cp -p``):
    a fresh mtime made git take the file as clean. Deterministic with fixed timestamps (and
    ``core.trustctime=false``, as on filesystems with unreliable ctimes)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    stamp = "@1600000000"

    def sh(command: str) -> None:
        subprocess.run(["bash", "-c", command], cwd=repo, check=True, capture_output=True)

    sh("git init -q -b main && git config core.trustctime false && printf 'a\\n' > small.txt"
       f" && touch -d {stamp} small.txt && git add -A"
       " && git -c user.name=T -c user.email=t@e commit -qm base")  # fmt: skip
    assert _run_script(repo, 1 << 20)["files"] == []  # (also leaves its restore stamp)
    sh(f"printf 'b\\n' > small.txt && touch -d {stamp} small.txt .git/index")
    files = _run_script(repo, 1 << 20)["files"]
    assert [(f["path"], f["additions"], f["deletions"]) for f in files] == [("small.txt", 1, 1)]


def _run_script(repo: Path, max_bytes: int) -> dict[str, Any]:
    script, _ = diff_module._script(max_bytes)
    done = subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, check=True)
    return diff_module.parse_output(
        done.stdout.decode("utf-8", "replace"), done.stderr.decode(), max_bytes
    )


REMOTE = """
printf 'base\\n' > shared.txt && git add -A && git commit -q -m base
git init -q --bare -b main .git/upstream.git
git remote add origin "$PWD/.git/upstream.git"
git push -q origin main && git fetch -q origin && git remote set-head origin main
git checkout -q -b feature
printf 'mine\\n' > feature.txt && git add -A && git commit -q -m feature
printf 'wip\\n' >> shared.txt
printf 'feature.txt linguist-generated\\n' > .git/info/attributes
"""
REMOTE_MOVES = """set -e
git clone -q -b main "$PWD/.git/upstream.git" /tmp/other
cd /tmp/other
printf 'theirs\\n' > theirs.txt && printf 'changed upstream\\n' > shared.txt
git add -A && git -c user.name=O -c user.email=o@example.com commit -q -m theirs
git push -q origin main
cd - >/dev/null && git fetch -q origin
"""


@sqlite_only
def test_the_base_is_the_merge_base_after_the_remote_moves(agents: AgentsFactory) -> None:
    h = agents()
    sid, _ = _session(h, REMOTE)
    base = _exec(h, sid, "git rev-parse main").strip()
    before = _diff(h, sid)
    _exec(h, sid, REMOTE_MOVES)
    assert _exec(h, sid, "git rev-parse origin/main").strip() != base  # it did move
    after = _diff(h, sid)
    for diff in (before, after):
        assert diff["baseRef"] == "origin/main" and diff["baseCommit"] == base
        files = _by_path(diff)
        assert set(files) == {"feature.txt", "shared.txt"}  # not theirs.txt, not their edit
        assert files["feature.txt"]["status"] == "added"
        assert files["feature.txt"]["generated"] is True  # from .git/info/attributes alone
        assert "+wip\n" in files["shared.txt"]["diff"]
        assert "changed upstream" not in files["shared.txt"]["diff"]


@sqlite_only
def test_not_a_repository_is_409_a_broken_one_502_and_turns_go_on(
    agents: AgentsFactory,
) -> None:
    h = agents()
    sid, chat = _session(h)
    _exec(h, sid, "find . -mindepth 1 -delete && echo hi > notes.txt")
    r = _cached(h, sid)
    assert (r.status_code, r.json()) == (404, {"status": "error", "error": "No cached diff"})
    r = h.client.get(f"/api/sessions/{sid}/diff", headers=h.account.headers)
    assert r.status_code == 409, r.text
    assert r.json() == {"status": "error", "error": "The workspace is not a git repository"}
    # A turn in such a workspace ends normally; its refresh finds nothing to cache.
    _turn(h, sid, chat, h.script([ToolCalls([Call("bash", {"command": "true"})]), Text("hi")]))
    assert _cached(h, sid).status_code == 404

    # A repository git cannot read: the live diff is a 502 naming git's complaint, and a turn
    # whose refresh fails the same way still completes (the failure is logged, not raised).
    _exec(h, sid, FRESH_REPO + "git commit -q --allow-empty -m base && echo junk > .git/index")
    r = h.client.get(f"/api/sessions/{sid}/diff", headers=h.account.headers)
    assert r.status_code == 502, r.text
    assert r.json()["error"].startswith("git failed: ") and "index" in r.json()["error"]
    model = h.script([ToolCalls([Call("bash", {"command": "true"})]), Text("hello")])
    _turn(h, sid, _new_chat(h, sid), model)
    assert _cached(h, sid).status_code == 404


TURN_REPO = """
printf 'alpha\\nbeta\\n' > notes.txt && git add -A && git commit -q -m base
"""


def test_the_cached_diff_follows_every_turn_that_can_change_the_workspace(
    agents: AgentsFactory,
) -> None:
    h = agents()
    sid, chat = _session(h, TURN_REPO)
    model = h.script([
        ToolCalls([Call("edit", {
            "filePath": "notes.txt", "oldString": "beta", "newString": "gamma\ndelta",
        })]),
        ToolCalls([Call("write", {"filePath": "added.txt", "content": "x\ny\n"})]),
        Text("done"),
    ])  # fmt: skip
    _turn(h, sid, chat, model)
    cached = _cached(h, sid).json()
    files = _by_path(cached)
    assert set(files) == {"notes.txt", "added.txt"}
    assert (files["notes.txt"]["additions"], files["notes.txt"]["deletions"]) == (2, 1)
    assert files["added.txt"]["status"] == "added" and files["added.txt"]["additions"] == 2
    session = _session_row(h, sid)
    assert (session["linesAdded"], session["linesRemoved"]) == (4, 1)
    assert session["cachedDiffUpdatedAt"] is not None
    first_at = cached["cachedAt"]

    # The next turn undoes one change.
    model = h.script([ToolCalls([Call("bash", {"command": "rm added.txt"})]), Text("ok")])
    _turn(h, sid, _new_chat(h, sid), model)
    later = _cached(h, sid).json()["cachedAt"]
    assert datetime.fromisoformat(later) > datetime.fromisoformat(first_at)
    assert set(_by_path(_cached(h, sid).json())) == {"notes.txt"}
    assert (_session_row(h, sid)["linesAdded"], _session_row(h, sid)["linesRemoved"]) == (2, 1)

    # A turn that calls no tool runs no git in the sandbox: the cache stays as it was, even
    # though the workspace changed meanwhile (by other means than the turn).
    _exec(h, sid, "echo elsewhere > elsewhere.txt")
    _turn(h, sid, _new_chat(h, sid), h.script([Text("nothing to change")]))
    assert _cached(h, sid).json()["cachedAt"] == later
    assert set(_by_path(_cached(h, sid).json())) == {"notes.txt"}
    # Nor does one that only reads.
    model = h.script([ToolCalls([Call("read", {"filePath": "notes.txt"})]), Text("read")])
    _turn(h, sid, _new_chat(h, sid), model)
    assert _cached(h, sid).json()["cachedAt"] == later


def test_hibernation_refreshes_the_cache_which_stays_readable(agents: AgentsFactory) -> None:
    h = agents()
    sid, _ = _session(
        h, TURN_REPO + "printf 'same\\n' > clean.txt && git add -A && git commit -qm c\n"
    )
    _exec(h, sid, "printf 'alpha\\nBETA\\n' > notes.txt && printf 'z\\n' > new.txt")
    assert _cached(h, sid).status_code == 404  # no turn, no diff yet
    r = h.client.post(f"/api/sessions/{sid}/sandbox/hibernate", headers=h.account.headers)
    assert r.status_code == 200 and r.json()["lifecycleState"] == "hibernated", r.text

    cached = _cached(h, sid)  # refreshed before the snapshot; read without waking the sandbox
    assert cached.status_code == 200, cached.text
    files = _by_path(cached.json())
    assert set(files) == {"notes.txt", "new.txt"}
    assert (files["notes.txt"]["additions"], files["notes.txt"]["deletions"]) == (1, 1)
    session = _session_row(h, sid)
    assert session["lifecycleState"] == "hibernated"
    assert (session["linesAdded"], session["linesRemoved"]) == (2, 1)

    live = _diff(h, sid)  # restores the sandbox from its snapshot
    assert _session_row(h, sid)["lifecycleState"] == "active"
    assert {k: v for k, v in _cached(h, sid).json().items() if k != "cachedAt"} == live
    assert _by_path(live) == files
    # Every inode changed in the restore: the diff saw it and refreshed the index's stat data
    # (else every later diff would re-read every file).
    indexed = _exec(h, sid, "git ls-files --debug -- clean.txt")
    actual = _exec(h, sid, "stat -c %i clean.txt").strip()
    assert re.search(r"\bino: (\d+)", indexed).group(1) == actual  # type: ignore[union-attr]
