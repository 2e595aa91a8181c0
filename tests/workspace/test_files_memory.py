"""Downloads of a file larger than the service's memory budget stream through it.

A real ``serve`` subprocess with a real bubblewrap sandbox; the scripted stand-in model writes
a 100 MB file of random bytes (incompressible: the archives are as large as the file). Raw
content, ``.tar.gz`` and ``.zip`` are downloaded over real HTTP and checked byte for byte, and
the service's peak resident memory (``VmHWM``, reset through ``/proc/<pid>/clear_refs``) across
the three stays within :data:`BUDGET` of its resident memory before them: a third of the file,
so holding the file (or an archive) whole in the service would fail it.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import parse_sse
from tests.agent.protocol import tool_outputs
from tests.conftest import Backend, make_account, make_backend, start_server, stop_server
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import Call, ModelServer, Text, ToolCalls
from tests.support.served_sessions import get_json, new_active_session
from tests.support.waiting import until

pytestmark = pytest.mark.slow

MIB = 1 << 20
SIZE = 100_000_000
BUDGET = 32 * MIB


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    with make_backend("sqlite", tmp_path / "db") as fresh:
        yield fresh


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class _Client:
    def __init__(self, url: str, model_server: ModelServer, headers: dict[str, str]) -> None:
        self.url, self.model_server, self.h = url, model_server, headers
        self.sid = new_active_session(url, headers)

    def get_json(self, path: str) -> Any:
        return get_json(self.url, path, self.h)

    def paths(self) -> list[str]:
        """Every path but the repository's (a session's workspace is a git repository)."""
        entries = self.get_json(f"/api/sessions/{self.sid}/files?all=true")["entries"]
        return sorted(p for e in entries if (p := e["path"]) != ".git" and p[:5] != ".git/")

    def bash(self, command: str) -> str:
        """Run ``command`` through the agent's bash tool (a turn in a new chat); its stdout."""
        name = f"files-{time.monotonic_ns()}"
        self.model_server.script(name, [ToolCalls([Call("bash", {"command": command})]),
                                        Text("done")])  # fmt: skip
        chat = httpx.post(
            f"{self.url}/api/sessions/{self.sid}/chats", json={}, headers=self.h
        ).json()["chat"]["id"]
        body = {
            "id": chat, "sessionId": self.sid, "model": f"openai/{name}",
            "messages": [{"id": f"u-{name}", "role": "user",
                          "parts": [{"type": "text", "text": "go"}]}],
        }  # fmt: skip
        r = httpx.post(f"{self.url}/api/chat", json=body, headers=self.h, timeout=600)
        assert r.status_code == 200, r.text
        output = tool_outputs(parse_sse(r.text))["call_0_0"]["output"]
        assert output["exitCode"] == 0, output
        return str(output["stdout"])

    def download(self, route: str, dest: Path, **params: str) -> httpx.Headers:
        """Stream a download to ``dest`` (a chunk at a time here too)."""
        url = f"{self.url}/api/sessions/{self.sid}{route}"
        with (
            httpx.stream("GET", url, params=params, headers=self.h, timeout=600) as r,
            dest.open("wb") as out,
        ):
            assert r.status_code == 200, r.read()
            for chunk in r.iter_bytes(MIB):
                out.write(chunk)
            return r.headers


def _sha256(f: Any) -> str:
    digest = hashlib.sha256()
    while chunk := f.read(MIB):
        digest.update(chunk)
    return digest.hexdigest()


def test_large_downloads_stream_with_bounded_service_memory(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer, tmp_path: Path
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
        c = _Client(srv.url, model_server, make_account(backend.db).headers)
        c.bash("printf small > small.bin")
        # Warm-up: the same three downloads on a small workspace, so that what the first one
        # of each loads (imports, the worker thread) is in the baseline.
        c.download("/files/content", tmp_path / "warm", path="small.bin", raw="true")
        c.download("/files/archive", tmp_path / "warm.tgz", format="tar.gz")
        c.download("/files/archive", tmp_path / "warm.zip", format="zip")
        expected = c.bash(f"head -c {SIZE} /dev/urandom > big.bin && sha256sum big.bin").split()[0]

        pid = srv.process.pid
        before = _vm(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        raw = c.download("/files/content", tmp_path / "big.bin", path="big.bin", raw="true")
        tgz = c.download("/files/archive", tmp_path / "ws.tar.gz", format="tar.gz")
        c.download("/files/archive", tmp_path / "ws.zip", format="zip")
        peak = _vm(pid, "VmHWM")
        grown = peak - before
        print(f"serve RSS before {before / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB")
        assert grown <= BUDGET, (
            f"the downloads took the service from {before / MIB:.1f} MiB to a peak of "
            f"{peak / MIB:.1f} MiB (+{grown / MIB:.1f} MiB, budget {BUDGET // MIB} MiB)"
        )

        assert raw["content-length"] == str(SIZE)
        with (tmp_path / "big.bin").open("rb") as f:
            assert _sha256(f) == expected
        assert int(tgz["content-length"]) == (tmp_path / "ws.tar.gz").stat().st_size > SIZE
        with tarfile.open(tmp_path / "ws.tar.gz", "r:gz") as tar:
            member = tar.extractfile("./big.bin")
            assert member is not None
            assert _sha256(member) == expected
        with zipfile.ZipFile(tmp_path / "ws.zip") as z, z.open("big.bin") as member_zip:
            assert _sha256(member_zip) == expected
        # The temporary archives are gone from the workspace, also those of downloads the
        # client gave up after one chunk.
        assert c.paths() == ["big.bin", "small.bin"]
        for fmt in ("tar.gz", "zip"):
            url = f"{srv.url}/api/sessions/{c.sid}/files/archive"
            with httpx.stream("GET", url, params={"format": fmt}, headers=c.h, timeout=600) as r:
                assert r.status_code == 200
                assert next(r.iter_raw(MIB))
        until("abandoned archives deleted", lambda: c.paths() == ["big.bin", "small.bin"])
    finally:
        stop_server(srv)
