"""Operator hooks around agent turns, in the Claude Code hook format (real hook processes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.agent.conftest import AgentsFactory
from tests.agent.protocol import check_protocol, tool_outputs
from tests.support.model_server import Call, Text, ToolCalls

GUARD = """
import json, sys
event = json.load(sys.stdin)
command = event["tool_input"].get("command", "")
with open(sys.argv[1], "a") as log:
    log.write(json.dumps({"event": event["hook_event_name"], "tool": event["tool_name"],
                          "session": event["session_id"], "cwd": event["cwd"]}) + "\\n")
if "rm -rf" in command:
    print("no recursive deletes here", file=sys.stderr)
    sys.exit(2)
if "deny-me" in command:
    print(json.dumps({"hookSpecificOutput": {"permissionDecision": "deny",
                                             "permissionDecisionReason": "policy says no"}}))
"""

POST = """
import json, sys
event = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write(json.dumps({"event": event["hook_event_name"],
                          "response": event["tool_response"]}) + "\\n")
"""

PROMPT = """
import json, sys
event = json.load(sys.stdin)
if "forbidden" in event["prompt"]:
    print("that topic is off limits", file=sys.stderr)
    sys.exit(2)
"""


def _hooks(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "hooks.log"
    scripts = {}
    for name, body in (("guard", GUARD), ("post", POST), ("prompt", PROMPT)):
        path = tmp_path / f"{name}.py"
        path.write_text(body)
        scripts[name] = f"{sys.executable} {path} {log}"
    config = {
        "hooks": {
            "PreToolUse": [{"matcher": "bash", "hooks": [{"type": "command",
                                                          "command": scripts["guard"]}]}],
            "PostToolUse": [{"matcher": "bash|write", "hooks": [{"type": "command",
                                                                "command": scripts["post"]}]}],
            "UserPromptSubmit": [{"hooks": [{"type": "command", "command": scripts["prompt"]}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "exit 1"}]}],
        }
    }  # fmt: skip
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps(config))
    return path, log


def test_tool_hooks_block_allow_and_observe(agents: AgentsFactory, tmp_path: Path) -> None:
    hooks_file, log = _hooks(tmp_path)
    h = agents(hooks_file=hooks_file)
    model = h.script(
        [
            ToolCalls([Call("bash", {"command": "rm -rf /workspace/*"})]),
            ToolCalls([Call("bash", {"command": "echo deny-me"})]),
            ToolCalls([Call("bash", {"command": "echo allowed"})]),
            ToolCalls([Call("read", {"filePath": "nothing-here"})]),
            Text("done"),
        ]
    )
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, _ = h.turn(sid, chat_id, "clean up", model=model)
    check_protocol(chunks)
    out = tool_outputs(chunks)
    assert out["call_0_0"]["errorText"] == (
        "Blocked by a PreToolUse hook: no recursive deletes here"
    )
    assert out["call_1_0"]["errorText"] == "Blocked by a PreToolUse hook: policy says no"
    assert out["call_2_0"]["output"]["stdout"] == "allowed\n"
    # The failing Stop hook is reported in the stream, not fatal.
    reported = [c for c in chunks if c["type"] == "data-hook"]
    assert [r["data"]["event"] for r in reported] == ["Stop"]

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    pre = [e for e in entries if e["event"] == "PreToolUse"]
    assert [e["tool"] for e in pre] == ["bash", "bash", "bash"]  # matcher: bash only
    assert all(e["session"] == sid and e["cwd"] == "/workspace" for e in pre)
    post = [e for e in entries if e["event"] == "PostToolUse"]
    assert [e["response"]["stdout"] for e in post] == ["allowed\n"]  # blocked calls never ran


def test_a_user_prompt_hook_can_refuse_the_turn(agents: AgentsFactory, tmp_path: Path) -> None:
    hooks_file, _ = _hooks(tmp_path)
    h = agents(hooks_file=hooks_file)
    model = h.script([Text("should not be asked")])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "tell me the forbidden thing", model=model)
    check_protocol(chunks)
    errors = [c["errorText"] for c in chunks if c["type"] == "error"]
    assert errors == ["Blocked by a UserPromptSubmit hook: that topic is off limits"]
    assert h.model.requests(model.split("/", 1)[1]) == []
    assert h.run(headers["x-workflow-run-id"])["status"] == "failed"
