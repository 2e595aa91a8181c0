"""Provisioning clones the bound repository (over git's own protocol from a local
``git daemon``; the fake provider runs on the host network, so no internet is involved)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.lifecycle.conftest import HarnessFactory
from tests.lifecycle.test_lifecycle import _read


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


@pytest.fixture
def repo_url(tmp_path: Path) -> Iterator[str]:
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "README.md").write_text("main branch\n")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "first")
    _git(work, "checkout", "-q", "-b", "feature")
    (work / "README.md").write_text("feature branch\n")
    _git(work, "commit", "-q", "-am", "feature")
    _git(work, "checkout", "-q", "main")  # the served repository's default branch
    served = tmp_path / "served"
    served.mkdir()
    _git(tmp_path, "clone", "-q", "--bare", str(work), str(served / "demo.git"))
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}",
         f"--port={port}", "--listen=127.0.0.1", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"git://127.0.0.1:{port}/demo.git"
    for _ in range(100):
        if subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    yield url
    daemon.terminate()
    daemon.wait()


@pytest.mark.parametrize(
    ("branch", "new_branch", "content", "head"),
    [
        (None, False, "main branch\n", "main"),
        ("feature", False, "feature branch\n", "feature"),
        ("agent/x1", True, "main branch\n", "agent/x1"),
    ],
)
def test_provisioning_clones_the_repo(
    harness: HarnessFactory,
    repo_url: str,
    branch: str | None,
    new_branch: bool,
    content: str,
    head: str,
) -> None:
    h = harness()
    body = {"cloneUrl": repo_url, "isNewBranch": new_branch}
    if branch:
        body["branch"] = branch
    created = h.create(**body)
    assert created["cloneUrl"] == repo_url and created["branch"] == branch
    s = h.wait_state(created["id"], "active")
    assert _read(h, s, "README.md").decode() == content
    assert _read(h, s, ".git/HEAD").decode().strip() == f"ref: refs/heads/{head}"


def test_unreachable_repo_fails_with_a_readable_error(harness: HarnessFactory) -> None:
    h = harness()
    port = free_port()  # nothing listens there
    created = h.create(cloneUrl=f"git://127.0.0.1:{port}/nope.git")
    s = h.wait_state(created["id"], "failed")
    assert s["lifecycleError"].startswith("git clone failed")
    assert "Traceback" not in s["lifecycleError"]
