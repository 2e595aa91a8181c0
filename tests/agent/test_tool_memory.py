"""One tool call must not take gigabytes of the service's memory (issue 14, finding 2).

A real ``serve`` subprocess with real bubblewrap sandboxes; the scripted stand-in model drives
``read``, ``edit``, ``grep`` and ``glob`` on a 1 GiB sparse file, a 200 MB one-line file and a
200 MB file of newlines. The service's peak resident memory (``VmHWM``, reset through
``/proc/<pid>/clear_refs``) across those calls stays within 64 MiB of its resident memory
before them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import parse_sse
from tests.agent.protocol import check_protocol, tool_outputs
from tests.conftest import Backend, Server, make_account, make_backend, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import Call, ModelServer, Text, ToolCalls
from tests.support.served_sessions import get_json, new_active_session

pytestmark = pytest.mark.slow

MIB = 1 << 20
BUDGET = 64 * MIB
"""What the calls may add to the service's resident memory (the issue's bound)."""

_MAKE_FILES = (
    "yes abcdefg | head -c 9000 > sp && truncate -s 1G sp"
    " && head -c 200000000 /dev/zero | tr '\\0' a > one"
    " && head -c 200000000 /dev/zero | tr '\\0' '\\n' > nl"
    " && printf 'small\\nfile\\n' > small.txt"
)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    """SQLite only: what is measured is the tools, not the database."""
    with make_backend("sqlite", tmp_path / "db") as fresh:
        yield fresh


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _calls(path_of: dict[str, str]) -> list[Call]:
    """The same tool calls, on the files named by ``path_of`` (small ones for the warm-up)."""
    return [
        Call("read", {"filePath": path_of["sp"], "limit": 1}),
        Call("read", {"filePath": path_of["one"], "limit": 1}),
        Call("read", {"filePath": path_of["nl"], "limit": 1}),
        Call("read", {"filePath": path_of["one"], "offset": 2}),
        Call("edit", {"filePath": path_of["sp"], "oldString": "abcdefg", "newString": "x"}),
        Call("edit", {"filePath": path_of["one"], "oldString": "aaaa", "newString": "b"}),
        Call("grep", {"pattern": "aaa|abc", "path": path_of["one"]}),
        Call("glob", {"pattern": "*"}),
    ]


class _Driver:
    def __init__(self, srv: Server, model_server: ModelServer, headers: dict[str, str]) -> None:
        self.srv, self.model_server, self.h = srv, model_server, headers
        self.sid = new_active_session(srv.url, headers)

    def _get(self, path: str) -> Any:
        return get_json(self.srv.url, path, self.h)

    def turn(self, calls: list[Call]) -> list[dict[str, Any]]:
        """One turn, one tool call a step (so the calls run one after another)."""
        name = f"memory-{time.monotonic_ns()}"
        self.model_server.script(name, [*(ToolCalls([c]) for c in calls), Text("done")])
        chat = httpx.post(
            f"{self.srv.url}/api/sessions/{self.sid}/chats", json={}, headers=self.h
        ).json()["chat"]["id"]
        body = {
            "id": chat, "sessionId": self.sid, "model": f"openai/{name}",
            "messages": [{"id": f"u-{name}", "role": "user",
                          "parts": [{"type": "text", "text": "go"}]}],
        }  # fmt: skip
        r = httpx.post(f"{self.srv.url}/api/chat", json=body, headers=self.h, timeout=600)
        assert r.status_code == 200, r.text
        chunks = parse_sse(r.text)
        check_protocol(chunks)
        outputs = tool_outputs(chunks)
        assert len(outputs) == len(calls), outputs
        return [outputs[f"call_{i}_0"] for i in range(len(calls))]


def test_tools_on_huge_files_leave_the_service_memory_bounded(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer
) -> None:
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    env = {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": model_server.base_url,
        "AGENT_SESSIONS_SANDBOX_UID_BASE": str(UID_BASE + 20),
        "AGENT_SESSIONS_SANDBOX_UID_COUNT": "20",
    }
    srv = start_server(sandbox_data_dir, backend.url, **env)
    try:
        driver = _Driver(srv, model_server, make_account(backend.db).headers)
        made = driver.turn([Call("bash", {"command": _MAKE_FILES})])
        assert made[0]["output"]["exitCode"] == 0, made
        # Warm-up: the same calls on a small file, so that what the first call of each tool
        # loads (imports, caches, pools) is in the baseline.
        driver.turn(_calls(dict.fromkeys(("sp", "one", "nl"), "small.txt")))

        pid = srv.process.pid
        before = _status_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        outputs = driver.turn(_calls({"sp": "sp", "one": "one", "nl": "nl"}))
        peak = _status_kib(pid, "VmHWM")
        grown = (peak - before) * 1024
        print(f"serve RSS before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
        assert grown <= BUDGET, (
            f"the calls took the service from {before / 1024:.1f} MiB to a peak of "
            f"{peak / 1024:.1f} MiB (+{grown / MIB:.1f} MiB, budget {BUDGET // MIB} MiB)"
        )
        # Each call answered (a result or a clear tool error), none crashed the turn.
        kinds = [o["type"] for o in outputs]
        assert kinds[:4] == ["tool-output-available"] * 4, outputs
        assert outputs[0]["output"].startswith("1: abcdefg\n"), outputs[0]
        assert kinds[4:6] == ["tool-output-error"] * 2, outputs
        assert "bash" in outputs[4]["errorText"], outputs[4]
        matches = outputs[6]["output"]["matches"]  # the 200 MB line matched, and came cut
        assert matches[0].startswith("1:aaa"), outputs[6]
        assert max(len(m) for m in matches) <= 200, outputs[6]
        assert os.path.exists(f"/proc/{pid}")
    finally:
        stop_server(srv)
