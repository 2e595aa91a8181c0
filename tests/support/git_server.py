"""Real git remotes for tests: bare repositories under a directory, served by ``git daemon``
over loopback (``git://127.0.0.1:<port>/<name>.git``). No stand-in: it is git's own server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.conftest import free_port

IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.com")


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    """Run git in ``cwd`` with a fixed identity; its stdout (raises on failure)."""
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True, input=input
    ).stdout.decode()


def make_bare(
    root: Path, name: str, files: Mapping[str, str | bytes], branch: str = "main"
) -> Path:
    """``root/<name>.git``: a bare repository whose ``branch`` (its default) holds ``files``
    in one commit. Returns the path of a work tree cloned from it (to push more from)."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", branch)
    for path, content in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    git(root, "clone", "-q", "--bare", str(work), str(root / f"{name}.git"))
    git(work, "remote", "add", "origin", str(root / f"{name}.git"))
    git(work, "fetch", "-q", "origin")
    git(work, "branch", "-q", "-u", f"origin/{branch}")
    return work


@contextlib.contextmanager
def git_daemon(root: Path) -> Iterator[str]:
    """Serve every bare repository under ``root`` read/write; yields ``git://127.0.0.1:<port>``."""
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
         f"--base-path={root}", f"--port={port}", "--listen=127.0.0.1", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"git://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.02)
        yield base
    finally:
        daemon.terminate()
        daemon.wait()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
