"""A running command's output reaches the client while it runs (preliminary tool outputs)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.protocol import check_protocol, tool_outputs
from tests.agent.test_control import Background, _session
from tests.support.model_server import Call, Text, ToolCalls

WAITS = "while [ ! -e go ]; do sleep 0.05; done"
"""The command goes on only once the test has written ``go`` into the workspace."""


def _shown(bg: Background) -> list[dict[str, Any]]:
    """The preliminary outputs the stream has carried so far."""
    found = []
    for event in bg.raw.split("\n\n"):
        if event.startswith("data: {") and '"preliminary"' in event:
            try:
                chunk = json.loads(event[len("data: ") :])
            except ValueError:  # the event's end has not arrived yet
                continue
            if chunk.get("preliminary"):
                found.append(chunk)
    return found


def _wait_shown(bg: Background, wanted: Callable[[dict[str, Any]], bool] | dict[str, Any]) -> None:
    """Until a preliminary output is ``wanted`` (or one that ``wanted`` accepts)."""
    accepts = wanted if callable(wanted) else wanted.__eq__
    deadline = time.monotonic() + 30
    while not any(accepts(c["output"]) for c in _shown(bg)):
        assert time.monotonic() < deadline, f"never shown {wanted}: {_shown(bg)[-3:]}"
        time.sleep(0.02)


def _running(h: Agents, command: str) -> tuple[str, str, str, Background]:
    """A turn whose one bash call runs ``command``, streamed in the background: its session,
    chat, model name and reader."""
    name = h.script([ToolCalls([Call("bash", {"command": command})]), Text("all done")])
    sid, chat_id = _session(h)
    return sid, chat_id, name, Background(h, sid, chat_id, "go", name)


def _write(h: Agents, sid: str, path: str) -> None:
    r = h.client.put(
        f"/api/sessions/{sid}/files/content", params={"path": path}, content=b"",
        headers=h.account.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text


def test_a_running_command_shows_its_output_before_it_ends(agents: AgentsFactory) -> None:
    h = agents()
    sid, chat_id, name, bg = _running(h, f"echo first; echo warn >&2; {WAITS}; echo second")
    _wait_shown(bg, {"stdout": "first\n", "stderr": "warn\n", "running": True})
    _write(h, sid, "go")  # only now can the command end

    chunks = bg.chunks()
    check_protocol(chunks)  # every preliminary output before the call's one outcome
    final = tool_outputs(chunks)["call_0_0"]
    assert final["type"] == "tool-output-available" and "preliminary" not in final
    assert final["output"]["stdout"] == "first\nsecond\n"
    # The model got the command's result, never a preliminary output.
    tool_results = [
        m["content"] for m in h.model.requests(name.split("/")[1])[-1]["messages"]
        if m["role"] == "tool"
    ]  # fmt: skip
    assert len(tool_results) == 1 and "second" in tool_results[0]
    assert "running" not in tool_results[0]
    # The stored message holds the final output only (as the AI SDK client folds the stream).
    parts = h.chat(sid, chat_id)["messages"][-1]["parts"]
    (call,) = [p for p in parts if p.get("toolCallId") == "call_0_0"]
    assert call["state"] == "output-available" and "preliminary" not in call
    assert call["output"]["stdout"] == "first\nsecond\n"


def test_only_the_tail_of_a_flood_is_shown(agents: AgentsFactory) -> None:
    h = agents()
    sid, _, _, bg = _running(h, f"seq 1 200000; {WAITS}")
    _wait_shown(bg, lambda output: output["stdout"].endswith("\n200000\n"))
    _write(h, sid, "go")
    chunks = bg.chunks()
    shown = [c["output"] for c in chunks if c.get("preliminary")]
    assert all(len(output["stdout"]) <= 4096 for output in shown)
    last = shown[-1]  # the whole output came: nothing changed after it
    assert last["stdout"].endswith("\n200000\n") and last["truncated"] is True
    assert len(last["stdout"]) > 4000  # a tail of whole lines, the first one maybe cut
    assert last["stdout"].split("\n", 1)[1].startswith(tuple("123456789"))
    assert tool_outputs(chunks)["call_0_0"]["output"]["truncated"] is True


def test_a_stopped_command_keeps_what_it_had_shown(agents: AgentsFactory) -> None:
    h = agents()
    tag = str(700_000 + secrets.randbelow(99_999))
    sid, chat_id, _, bg = _running(h, f"echo building; echo careful >&2; sleep {tag}")
    _wait_shown(bg, {"stdout": "building\n", "stderr": "careful\n", "running": True})
    r = h.client.post(f"/api/chat/{chat_id}/stop", headers=h.account.headers)
    assert r.json() == {"success": True, "stopped": True}

    chunks = bg.chunks()
    check_protocol(chunks)
    error = tool_outputs(chunks)["call_0_0"]
    assert error["type"] == "tool-output-error"
    expected = "Cancelled by the user\n\nIts output before it ended:\nbuilding\n"
    expected += "\nstderr:\ncareful\n"
    assert error["errorText"] == expected
    parts = h.chat(sid, chat_id)["messages"][-1]["parts"]
    (call,) = [p for p in parts if p.get("toolCallId") == "call_0_0"]
    assert call["state"] == "output-error" and call["errorText"] == expected
    assert "output" not in call and "preliminary" not in call
