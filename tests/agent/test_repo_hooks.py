"""Hooks a repository declares in ``.claude/settings.json`` run inside the session's bubblewrap
sandbox, only when the operator allows them; ``SessionStart`` and ``SessionEnd`` fire for the
operator's hooks and the repository's (real hook processes, real sandboxes, a real git remote)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_sessions.hooks.repo import INPUT_MAX_BYTES, bounded_input, claude_input, read_config
from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.protocol import check_protocol, tool_outputs
from tests.support.git_server import git_daemon, make_bare
from tests.support.model_server import Call, Text, ToolCalls
from tests.support.waiting import until
from tests.workspace.repos import out, run

GUARD = """
import json, os, sys
event = json.load(sys.stdin)
command = event["tool_input"]["command"]
with open(".hook-log", "a") as log:
    log.write(json.dumps({
        "event": event["hook_event_name"], "tool": event["tool_name"], "command": command,
        "session": event["session_id"], "cwd": os.getcwd(),
        "project": os.environ.get("CLAUDE_PROJECT_DIR"),
        "sees_host_file": os.path.exists(sys.argv[1]),
    }) + "\\n")
if command.split()[:1] == ["rm"]:
    print("rm is not allowed in this repository", file=sys.stderr)
    sys.exit(2)
"""


def _settings(host_file: Path) -> dict[str, Any]:
    guard = f'python3 "$CLAUDE_PROJECT_DIR/.claude/hooks/guard.py" {host_file}'
    return {
        "permissions": {"allow": ["Bash(ls:*)"]},  # other keys of the file are left alone
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": guard,
                                                          "timeout": 30}]}],
            "SessionStart": [{"matcher": "startup|resume", "hooks": [
                {"type": "command", "command": "python3 -c 'import json,sys; "
                 "print(json.load(sys.stdin)[\"source\"])' >> .session-log"}]}],
            "SessionEnd": [{"hooks": [{"type": "command",
                                       "command": "echo \"end $(id -u)\" >> .session-log"}]}],
        },
    }  # fmt: skip


@contextlib.contextmanager
def _remote(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A served repository whose ``.claude/settings.json`` guards ``rm``; yields its URL and
    a host file the hooks must not see."""
    host_file = tmp_path / "host-only.txt"
    host_file.write_text("the host's\n")
    root = tmp_path / "served"
    files = {
        "README.md": "keep me\n",
        ".claude/settings.json": json.dumps(_settings(host_file)),
        ".claude/hooks/guard.py": GUARD,
    }
    make_bare(root, "demo", files)
    with git_daemon(root) as base:
        yield f"{base}/demo.git", host_file


def _read(a: Agents, sid: str) -> dict[str, Any]:
    r = a.client.get(f"/api/sessions/{sid}", headers=a.account.headers)
    assert r.status_code == 200, r.text
    return r.json()["session"]  # type: ignore[no-any-return]


def _session(a: Agents, url: str) -> tuple[dict[str, Any], str]:
    created = a.new_session(cloneUrl=url)
    return _read(a, created["session"]["id"]), created["chat"]["id"]


def _rm_then_echo(a: Agents) -> str:
    return a.script(
        [
            ToolCalls([Call("bash", {"command": "rm README.md"})]),
            ToolCalls([Call("bash", {"command": "echo fine"})]),
            Text("done"),
        ]
    )


def test_a_repository_hook_blocks_inside_the_sandbox_when_allowed(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents(allow_repo_hooks=True)
    with _remote(tmp_path) as (url, host_file):
        session, chat = _session(a, url)
        assert out(a, session, "cat .session-log") == "startup\n"  # SessionStart at provisioning
        chunks, _ = a.turn(session["id"], chat, "tidy up", model=_rm_then_echo(a))
        check_protocol(chunks)
        outputs = tool_outputs(chunks)
        assert outputs["call_0_0"]["errorText"] == (
            "Blocked by a PreToolUse hook: rm is not allowed in this repository"
        )
        assert outputs["call_1_0"]["output"]["stdout"] == "fine\n"
        assert not [c for c in chunks if c["type"] == "data-hook"]  # nothing to warn about
        assert out(a, session, "cat README.md") == "keep me\n"

        log = [json.loads(line) for line in out(a, session, "cat .hook-log").splitlines()]
        assert [(e["tool"], e["command"]) for e in log] == [("Bash", "rm README.md"),
                                                            ("Bash", "echo fine")]  # fmt: skip
        for entry in log:  # it ran in the sandbox: its cwd is the workspace, the host unseen
            assert entry["event"] == "PreToolUse" and entry["session"] == session["id"]
            assert entry["cwd"] == entry["project"] == "/workspace"
            assert entry["sees_host_file"] is False
        assert host_file.exists()
        assert not (tmp_path / ".hook-log").exists() and not Path(".hook-log").exists()


def test_repository_hooks_are_ignored_unless_the_operator_allows_them(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()  # AGENT_SESSIONS_ALLOW_REPO_HOOKS is off by default
    with _remote(tmp_path) as (url, _):
        session, chat = _session(a, url)
        chunks, _ = a.turn(session["id"], chat, "tidy up", model=_rm_then_echo(a))
        check_protocol(chunks)
        assert tool_outputs(chunks)["call_0_0"]["output"]["exitCode"] == 0
        listing = out(a, session, "ls -A")
        assert "README.md" not in listing.split()  # rm ran
        assert ".hook-log" not in listing.split() and ".session-log" not in listing.split()


def test_a_malformed_settings_file_is_a_warning_not_a_failed_turn(agents: AgentsFactory) -> None:
    a = agents(allow_repo_hooks=True)
    created = a.new_session()
    sid, chat = created["session"]["id"], created["chat"]["id"]
    session = _read(a, sid)
    script = "mkdir -p .claude && printf '{not json' > .claude/settings.json"
    assert run(a, session, script).exit_code == 0
    model = a.script([ToolCalls([Call("bash", {"command": "echo ran"})]), Text("done")])
    chunks, headers = a.turn(sid, chat, "go", model=model)
    check_protocol(chunks)
    assert tool_outputs(chunks)["call_0_0"]["output"]["stdout"] == "ran\n"
    warnings = [c["data"] for c in chunks if c["type"] == "data-hook"]
    assert len(warnings) == 1 and warnings[0]["event"] == "UserPromptSubmit", warnings
    assert warnings[0]["problems"][0].startswith(".claude/settings.json is not JSON")
    assert a.run(headers["x-workflow-run-id"])["status"] == "completed"

    # a file bigger than the bound, then a link out of the workspace: the same warning kind
    for script in (
        "head -c 70000 /dev/zero | tr '\\0' ' ' > .claude/settings.json",
        "rm .claude/settings.json && ln -s /etc/passwd .claude/settings.json",
    ):
        assert run(a, session, script).exit_code == 0
        chunks, headers = a.turn(sid, chat, "again", model=a.script([Text("ok")]))
        problems = [c["data"]["problems"] for c in chunks if c["type"] == "data-hook"]
        assert len(problems) == 1 and "no repository hooks run" in problems[0][0], problems
        assert a.run(headers["x-workflow-run-id"])["status"] == "completed"


def test_a_slow_repository_hook_is_cut_off_and_its_json_is_read(agents: AgentsFactory) -> None:
    a = agents(allow_repo_hooks=True)
    created = a.new_session()
    sid, chat = created["session"]["id"], created["chat"]["id"]
    feedback = {"decision": "block", "reason": "run the linter next"}
    noisy = f"head -c 300000 /dev/zero >&2; echo '{json.dumps(feedback)}'"  # stderr cut
    seen = (
        "python3 -c 'import json,sys; d=json.load(sys.stdin); "
        'print(d["input_truncated"], len(d["tool_input"]["content"]))\' > .seen'
    )
    settings = {"hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "sleep 30", "timeout": 1}]},
                       {"matcher": "Write", "hooks": [{"type": "command", "command": seen}]}],
        "PostToolUse": [{"matcher": "Write|Bash", "hooks": [
            {"type": "command", "command": noisy}]}],
    }}  # fmt: skip
    sandbox = _read(a, sid)
    script = f"mkdir -p .claude && cat > .claude/settings.json <<'EOF'\n{json.dumps(settings)}\nEOF"
    assert run(a, sandbox, script).exit_code == 0
    big = {"filePath": "big.txt", "content": "x" * 200_000}
    model = a.script([ToolCalls([Call("bash", {"command": "echo ran"})]),
                      ToolCalls([Call("write", big)]), Text("done")])  # fmt: skip
    chunks, headers = a.turn(sid, chat, "go", model=model)
    check_protocol(chunks)
    # the write's input reached its hook cut to the bound, as JSON
    assert out(a, sandbox, "cat .seen") == f"True {16384 + len('…[truncated]')}\n"
    assert tool_outputs(chunks)["call_1_0"]["output"]["hookFeedback"] == "run the linter next"
    output = tool_outputs(chunks)["call_0_0"]["output"]
    assert output == {"result": {"exitCode": 0, "stdout": "ran\n", "stderr": ""},
                      "hookFeedback": "run the linter next"}  # fmt: skip
    problems = [c["data"]["problems"] for c in chunks if c["type"] == "data-hook"]
    assert problems == [[".claude/settings.json: hook timed out after 1s: sleep 30"]]
    assert a.run(headers["x-workflow-run-id"])["status"] == "completed"


def test_session_start_and_end_fire_for_operator_and_repository_hooks(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    record = tmp_path / "record.py"
    record.write_text(
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(json.load(sys.stdin)) + '\\n')\n"
    )
    command = f"{sys.executable} {record}"
    hooks_file = tmp_path / "hooks.json"
    hooks_file.write_text(json.dumps({"hooks": {
        event: [{"hooks": [{"type": "command", "command": command}]}]
        for event in ("SessionStart", "SessionEnd")
    }}))  # fmt: skip

    def events() -> list[tuple[str, str]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [
            (e["hook_event_name"], e.get("source") or e.get("reason"))
            for e in map(json.loads, lines)
        ]

    a = agents(hooks_file=hooks_file, allow_repo_hooks=True)
    h = a.account.headers
    with _remote(tmp_path) as (url, _):
        session, _ = _session(a, url)
        sid = session["id"]
        assert events() == [("SessionStart", "startup")]
        first = json.loads(log.read_text().splitlines()[0])
        assert first["session_id"] == sid and first["cwd"] == "/workspace"

        # archive: SessionEnd (the repository's hook writes into the workspace before the
        # snapshot); unarchive and resume: SessionStart "resume", in the restored sandbox
        r = a.client.patch(f"/api/sessions/{sid}", json={"status": "archived"}, headers=h)
        assert r.status_code == 200, r.text
        until("the archive to stop the sandbox", lambda: _read(a, sid)["sandboxState"] is None)
        assert events()[-1] == ("SessionEnd", "archived")
        r = a.client.patch(f"/api/sessions/{sid}", json={"status": "running"}, headers=h)
        assert r.status_code == 200, r.text
        assert a.client.post(f"/api/sessions/{sid}/sandbox/resume", headers=h).status_code == 200
        a.wait_active(sid)
        assert events()[-1] == ("SessionStart", "resume")
        resumed = _read(a, sid)
        sandbox_uid = out(a, resumed, "id -u").strip()
        assert out(a, resumed, "cat .session-log") == f"startup\nend {sandbox_uid}\nresume\n"

        assert a.client.delete(f"/api/sessions/{sid}", headers=h).status_code == 200
        until("SessionEnd on delete", lambda: events()[-1:] == [("SessionEnd", "deleted")])
        assert events() == [
            ("SessionStart", "startup"),
            ("SessionEnd", "archived"),
            ("SessionStart", "resume"),
            ("SessionEnd", "deleted"),
        ]


def test_repository_settings_are_read_leniently_and_inputs_bounded() -> None:
    config, warnings = read_config(
        json.dumps(
            {
                "hooks": {
                    "PreToolUse": [
                        {"matcher": "Bash", "hooks": [
                            {"type": "command", "command": "true", "timeout": 9999},
                            {"type": "prompt", "prompt": "is this fine?"},
                        ]},
                        {"matcher": "(", "hooks": [{"type": "command", "command": "true"}]},
                    ],
                    "Notification": [{"hooks": [{"type": "command", "command": "true"}]}],
                }
            }
        ).encode()
    )  # fmt: skip
    assert config == {
        "hooks": {
            "PreToolUse": [
                {
                    "matcher": "Bash",
                    "hooks": [{"type": "command", "command": "true", "timeout": 600.0}],
                }
            ]
        }
    }
    assert len(warnings) == 3, warnings
    assert read_config(None) == ({}, [])
    assert read_config(b'{"model": "x"}') == ({}, [])  # no hooks key: nothing to say

    body = claude_input(
        "PreToolUse",
        {"tool_name": "write", "tool_input": {"filePath": "a.txt", "content": "x" * 200_000}},
    )
    assert body["tool_name"] == "Write" and body["tool_input"]["file_path"] == "a.txt"
    text = bounded_input(body)
    assert len(text.encode()) <= INPUT_MAX_BYTES
    cut = json.loads(text)
    assert cut["input_truncated"] is True and cut["tool_input"]["file_path"] == "a.txt"
