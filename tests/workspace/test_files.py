"""The files API on real bubblewrap sandboxes: tree, content, uploads, archives, and the paths
that must not lead out of the workspace (``..``, absolute paths, symlinks the agent planted).

Workspaces are set up with commands run in the session's own sandbox (through the app's event
loop, ``sh``); everything checked goes through the HTTP API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.lifecycle.live import live_sandbox
from agent_sessions.sandbox import ExecResult
from tests.agent.conftest import Agents, AgentsFactory
from tests.conftest import Backend, make_backend

HOST_PASSWD = Path("/etc/passwd").read_bytes()
"""What a symlink to /etc/passwd would leak if the service followed it on the host."""


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    """SQLite only: what is tested is the sandbox side, not the database."""
    with make_backend("sqlite", tmp_path / "db") as fresh:
        yield fresh


def sh(h: Agents, sid: str, script: str) -> str:
    """Run ``script`` in the session's sandbox (set-up only); its stdout."""

    async def run() -> ExecResult:
        services = h.client.app.state.services  # type: ignore[attr-defined]
        sandbox, _ = await live_sandbox(services.db, services.lifecycle, h.account.id, sid)
        return await sandbox.exec(script, timeout=300)

    assert h.client.portal is not None
    result = h.client.portal.call(run)
    assert result.exit_code == 0, result
    return result.stdout


def session(h: Agents) -> str:
    return str(h.new_session()["session"]["id"])


def get(h: Agents, url: str, **params: Any) -> Any:
    return h.client.get(url, params=params, headers=h.account.headers)


def tree(h: Agents, sid: str, **params: Any) -> dict[str, Any]:
    r = get(h, f"/api/sessions/{sid}/files", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def entries(h: Agents, sid: str, **params: Any) -> set[tuple[str, str, int]]:
    return {(e["path"], e["type"], e["size"]) for e in tree(h, sid, **params)["entries"]}


def assert_error(r: Any, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == "error", body
    for word in words:
        assert word in body["error"], body


NEWLINE_NAME = "with space/new\nline é.txt"
SETUP = r"""
mkdir -p w/src/deep/er 'w/with space' w/empty w/node_modules/pkg w/lib/node_modules/x w/.git/refs
printf hi > w/src/deep/er/f.txt
printf abc > 'w/with space/new
line é.txt'
printf 'ü' > 'w/unicodé ✓.md'
: > w/node_modules/pkg/index.js
: > w/lib/node_modules/x/y.js
: > w/lib/keep.js
: > w/.git/HEAD
ln -s /etc/passwd w/passwd-link
ln -s .. w/up
ln -s /etc w/etc
"""
VISIBLE = {
    ("w/empty", "directory", 0),
    ("w/etc", "symlink", 4),
    ("w/lib", "directory", 0),
    ("w/lib/keep.js", "file", 0),
    ("w/passwd-link", "symlink", 11),
    ("w/src", "directory", 0),
    ("w/src/deep", "directory", 0),
    ("w/src/deep/er", "directory", 0),
    ("w/src/deep/er/f.txt", "file", 2),
    ("w/unicodé ✓.md", "file", 2),
    ("w/up", "symlink", 2),
    ("w/with space", "directory", 0),
    (f"w/{NEWLINE_NAME}", "file", 3),
}
HIDDEN = {
    ("w/.git", "directory", 0),
    ("w/.git/HEAD", "file", 0),
    ("w/.git/refs", "directory", 0),
    ("w/lib/node_modules", "directory", 0),
    ("w/lib/node_modules/x", "directory", 0),
    ("w/lib/node_modules/x/y.js", "file", 0),
    ("w/node_modules", "directory", 0),
    ("w/node_modules/pkg", "directory", 0),
    ("w/node_modules/pkg/index.js", "file", 0),
}


def test_tree_nested_exclusions_subtrees_and_bad_paths(agents: AgentsFactory) -> None:
    h = agents()
    sid = session(h)
    sh(h, sid, SETUP)
    base = f"/api/sessions/{sid}/files"

    listed = tree(h, sid)
    assert listed["path"] == "" and listed["truncated"] is False
    paths = [e["path"] for e in listed["entries"]]
    assert paths == sorted(paths)
    mine = {(e["path"], e["type"], e["size"]) for e in listed["entries"] if e["path"][:2] == "w/"}
    assert ("w", "directory", 0) in {(e["path"], e["type"], e["size"]) for e in listed["entries"]}
    assert mine == VISIBLE  # names with spaces, a newline and non-ASCII came back exact
    assert not [p for p in paths if ".git" in p.split("/") or "node_modules" in p.split("/")]

    everything = entries(h, sid, all="true")
    assert everything >= VISIBLE | HIDDEN

    assert entries(h, sid, path="w/src") == {
        ("w/src/deep", "directory", 0),
        ("w/src/deep/er", "directory", 0),
        ("w/src/deep/er/f.txt", "file", 2),
    }
    assert entries(h, sid, path="./w//src/deep/") == {
        ("w/src/deep/er", "directory", 0),
        ("w/src/deep/er/f.txt", "file", 2),
    }
    # Asked for by name, an excluded directory is listed.
    assert entries(h, sid, path="w/node_modules") == {
        ("w/node_modules/pkg", "directory", 0),
        ("w/node_modules/pkg/index.js", "file", 0),
    }
    assert entries(h, sid, path="w/empty") == set()

    assert_error(get(h, base, path="w/missing"), 404, "w/missing")
    assert_error(get(h, base, path="w/src/deep/er/f.txt"), 400, "not a directory")
    for path in ("w/etc", "w/up", "w/up/w", "w/etc/ssl"):  # links are not followed
        assert_error(get(h, base, path=path), 400, "symlink")
    for path in ("../x", "/etc", "w/../../x", "w/\0"):
        assert_error(get(h, base, path=path), 400)


def test_tree_stops_at_5000_entries(agents: AgentsFactory) -> None:
    h = agents()
    sid = session(h)
    sh(h, sid, "mkdir -p many/sub && cd many && seq -f 'f%05g' 1 5100 | xargs touch")
    capped = tree(h, sid, path="many")
    assert capped["truncated"] is True
    assert len(capped["entries"]) == 5000
    listed = {e["path"] for e in capped["entries"]}
    assert listed <= {"many/sub"} | {f"many/f{i:05d}" for i in range(1, 5101)}
    assert len(listed) == 5000
    assert tree(h, sid, path="many/sub") == {"path": "many/sub", "entries": [], "truncated": False}


def test_content_text_binary_limits_and_errors(agents: AgentsFactory) -> None:
    h = agents(files_max_read_bytes=2048)
    sid = session(h)
    sh(
        h,
        sid,
        SETUP
        + r"""
        printf 'héllo\nworld\n' > w/text.txt
        printf 'a\0b' > w/nul.bin
        printf 'ok \377\376' > w/latin.bin
        : > w/empty.txt
        head -c 3000 /dev/zero | tr '\0' x > w/big.txt
        """,
    )
    url = f"/api/sessions/{sid}/files/content"

    r = get(h, url, path="w/text.txt")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "path": "w/text.txt", "size": 13, "binary": False,
        "content": "héllo\nworld\n", "contentBase64": None,
    }  # fmt: skip
    for name, data in (("w/nul.bin", b"a\0b"), ("w/latin.bin", b"ok \xff\xfe")):
        body = get(h, url, path=name).json()
        assert body["binary"] is True and body["content"] is None, body
        assert base64.b64decode(body["contentBase64"]) == data
    assert get(h, url, path="w/empty.txt").json()["content"] == ""
    assert get(h, url, path=f"w/{NEWLINE_NAME}").json()["content"] == "abc"

    assert_error(get(h, url, path="w/big.txt"), 413, "2048")
    raw = get(h, url, path="w/big.txt", raw="true")  # raw mode streams any size
    assert raw.status_code == 200 and raw.content == b"x" * 3000
    assert raw.headers["content-length"] == "3000"
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"] == (
        "attachment; filename=\"big.txt\"; filename*=UTF-8''big.txt"
    )
    by_accept = h.client.get(
        url,
        params={"path": "w/unicodé ✓.md"},
        headers={**h.account.headers, "accept": "application/octet-stream"},
    )
    assert by_accept.content == "ü".encode()
    assert (
        "filename*=UTF-8''unicod%C3%A9%20%E2%9C%93.md" in by_accept.headers["content-disposition"]
    )
    assert get(h, url, path="w/empty.txt", raw="true").content == b""

    assert_error(get(h, url, path="w/missing.txt"), 404)
    assert_error(get(h, url, path="w/missing.txt", raw="true"), 404)
    assert_error(get(h, url, path="w/src"), 400, "directory")
    assert_error(get(h, url), 400, "path is required")
    assert_error(get(h, url, path="."), 400, "path is required")


ESCAPES = [
    "../x",
    "/etc/passwd",
    "w/../../etc/passwd",
    "w/../w/lib/keep.js",
    "w/\0x",
    "//etc/passwd",
]
THROUGH_LINKS = ["w/etc/passwd", "w/up/w/src/deep/er/f.txt"]
"""Paths through a link to a host directory, and through one to the workspace's parent."""
AT_LINKS = ["w/passwd-link", "w/up"]
"""Links themselves: to a host file, and to ``..``."""


def test_paths_never_leave_the_workspace(agents: AgentsFactory) -> None:
    h = agents()
    sid = session(h)
    sh(h, sid, SETUP)
    url = f"/api/sessions/{sid}/files/content"
    for path in ESCAPES + THROUGH_LINKS + AT_LINKS:
        for raw in ("false", "true"):
            r = get(h, url, path=path, raw=raw)
            assert r.status_code == 400, (path, raw, r.text)
            assert b"root:" not in r.content, path
    for path in ESCAPES + THROUGH_LINKS:
        r = h.client.put(url, params={"path": path}, content=b"x", headers=h.account.headers)
        assert r.status_code == 400, (path, r.text)
    # Nothing was written through a link: the host file is as it was, the links are links.
    assert Path("/etc/passwd").read_bytes() == HOST_PASSWD
    assert {("w/passwd-link", "symlink", 11), ("w/etc", "symlink", 4)} <= entries(h, sid)


def test_upload_then_read_back(agents: AgentsFactory) -> None:
    # An upload limit above the 1 MiB body limit of every other route.
    h = agents(files_max_upload_bytes=3 << 20)
    sid = session(h)
    sh(h, sid, SETUP + "printf '#!/bin/sh\\n' > w/run.sh && chmod 755 w/run.sh")
    url = f"/api/sessions/{sid}/files/content"

    def put(path: str, data: Any) -> Any:
        return h.client.put(url, params={"path": path}, content=data, headers=h.account.headers)

    r = put("new/dir/é f.txt", b"hello\n")
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "new/dir/é f.txt", "type": "file", "size": 6}
    assert get(h, url, path="new/dir/é f.txt").json()["content"] == "hello\n"
    assert ("new/dir", "directory", 0) in entries(h, sid)

    blob = os.urandom(2 << 20)  # 2 MiB: above max_body_bytes, within the upload limit
    assert put("blob.bin", blob).json() == {"path": "blob.bin", "type": "file", "size": 2 << 20}
    assert get(h, url, path="blob.bin", raw="true").content == blob

    # Replacing a file keeps its mode (a script stays executable).
    assert put("w/run.sh", b"#!/bin/sh\necho hi\n").status_code == 200
    assert sh(h, sid, "stat -c %a w/run.sh && ./w/run.sh") == "755\nhi\n"

    # A link at the path is replaced by the file; its target is untouched.
    assert put("w/passwd-link", b"mine").json() == {
        "path": "w/passwd-link", "type": "file", "size": 4,
    }  # fmt: skip
    assert Path("/etc/passwd").read_bytes() == HOST_PASSWD

    assert_error(put("w/src", b"x"), 409, "directory")
    assert_error(put("w/src/deep/er/f.txt/below", b"x"), 409)
    assert_error(put("", b"x"), 400, "path is required")

    # Over the limit: 413, declared or chunked, and nothing written.
    assert_error(put("over.bin", b"x" * ((3 << 20) + 1)), 413)

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"y" * (1 << 20)

    assert_error(put("chunked.bin", chunks()), 413)
    for name in ("over.bin", "chunked.bin"):
        assert_error(get(h, url, path=name), 404)
    # Every other route keeps the 1 MiB body limit.
    r = h.client.patch(
        f"/api/sessions/{sid}", json={"title": "t" * (2 << 20)}, headers=h.account.headers
    )
    assert_error(r, 413)


def _from_tar(data: bytes) -> dict[str, tuple[str, bytes]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar:
            name = m.name.removeprefix("./")
            if not name or name == ".":
                continue
            if m.isdir():
                out[name] = ("directory", b"")
            elif m.issym():
                out[name] = ("symlink", m.linkname.encode())
            else:
                f = tar.extractfile(m)
                assert f is not None
                out[name] = ("file", f.read())
    return out


def _from_zip(data: bytes) -> dict[str, tuple[str, bytes]]:
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        for info in z.infolist():
            mode = info.external_attr >> 16
            name = info.filename.rstrip("/")
            if info.is_dir():
                out[name] = ("directory", b"")
            elif stat.S_ISLNK(mode):
                out[name] = ("symlink", z.read(info))
            else:
                out[name] = ("file", z.read(info))
    return out


def test_archive_in_both_formats_matches_the_tree(agents: AgentsFactory) -> None:
    h = agents()
    sid = session(h)
    sh(h, sid, SETUP + "head -c 300000 /dev/urandom > w/random.bin")
    random_sha = sh(h, sid, "sha256sum w/random.bin").split()[0]
    url = f"/api/sessions/{sid}/files/archive"
    listed = tree(h, sid)
    assert listed["truncated"] is False
    expected = {e["path"]: e for e in listed["entries"]}

    for fmt, unpack in (("tar.gz", _from_tar), ("zip", _from_zip)):
        r = get(h, url, format=fmt)
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"].startswith(
            f'attachment; filename="workspace-{sid}.{fmt}"'
        )
        assert r.headers["content-type"] == f"application/{'gzip' if fmt == 'tar.gz' else 'zip'}"
        got = unpack(r.content)
        assert set(got) == set(expected), fmt
        for path, entry in expected.items():
            kind, data = got[path]
            assert kind == entry["type"], (fmt, path)
            if kind == "file":
                assert len(data) == entry["size"], (fmt, path)
        assert got["w/src/deep/er/f.txt"] == ("file", b"hi")
        assert got[f"w/{NEWLINE_NAME}"] == ("file", b"abc")
        assert got["w/passwd-link"] == ("symlink", b"/etc/passwd")  # the link, not the file
        assert hashlib.sha256(got["w/random.bin"][1]).hexdigest() == random_sha

        with_all = unpack(get(h, url, format=fmt, all="true").content)
        assert {p for p, _, _ in HIDDEN} <= set(with_all), fmt
        for extra in set(with_all) - set(got):
            assert {".git", "node_modules"} & set(extra.split("/")), extra

    # The temporary archive is gone, and so is the directory made for it.
    assert tree(h, sid)["entries"] == listed["entries"]
    assert_error(get(h, url, format="rar"), 400, "format")


def test_a_hibernated_sessions_files_restore_it(agents: AgentsFactory) -> None:
    h = agents()
    sid = session(h)
    sh(h, sid, "printf kept > kept.txt")
    r = h.client.post(f"/api/sessions/{sid}/sandbox/hibernate", headers=h.account.headers)
    assert r.status_code == 200 and r.json()["lifecycleState"] == "hibernated", r.text

    assert ("kept.txt", "file", 4) in entries(h, sid)
    state = get(h, f"/api/sessions/{sid}/sandbox").json()
    assert state["lifecycleState"] == "active"
    assert get(h, f"/api/sessions/{sid}/files/content", path="kept.txt").json()["content"] == (
        "kept"
    )


def test_a_live_route_waits_for_provisioning_to_finish(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    """Create a session, upload at once: the upload waits for the sandbox (held here by a
    provisioning hook until the test opens the gate) instead of answering 409."""
    gate = tmp_path / "gate"
    hold = {"type": "command", "command": f"while [ ! -e {gate} ]; do sleep 0.02; done"}
    hooks = tmp_path / "hooks.json"
    hooks.write_text(json.dumps({"hooks": {"SandboxProvisioned": [{"hooks": [hold]}]}}))
    h = agents(hooks_file=hooks)
    r = h.client.post("/api/sessions", json={}, headers=h.account.headers)
    sid = r.json()["session"]["id"]
    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(
            h.client.put, f"/api/sessions/{sid}/files/content?path=early.txt",
            content=b"early\n", headers=h.account.headers,
        )  # fmt: skip
        session = h.client.get(f"/api/sessions/{sid}", headers=h.account.headers).json()
        assert session["session"]["lifecycleState"] == "provisioning"
        gate.touch()
        answer = upload.result(timeout=60)
    assert answer.status_code == 200, answer.text
    got = h.client.get(
        f"/api/sessions/{sid}/files/content?path=early.txt", headers=h.account.headers
    )
    assert got.json()["content"] == "early\n"
