"""Provisioning binds the workspace to its repository through the durable workflow: cloned on
the host from a local ``git daemon`` and handed to a real bubblewrap sandbox (which has no
network). The fake provider cannot receive a repository (its restore knows only its own
snapshots), so these run on the local provider; ``tests/workspace`` covers the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sessions.workspace import remote
from agent_sessions.workspace.credentials import Vault
from tests.conftest import free_port
from tests.lifecycle.conftest import Harness, HarnessFactory
from tests.lifecycle.test_lifecycle import _read
from tests.workspace.repos import Remote, daemon_remote


@pytest.fixture
def sandbox_kind() -> str:
    return "local"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Remote]:
    with daemon_remote(tmp_path / "served") as r:
        yield r


@pytest.mark.parametrize(
    ("branch", "new_branch", "content", "head"),
    [
        (None, False, "main branch\n", "main"),
        ("feature", False, "feature branch\n", "feature"),
        ("feature", True, "feature branch\n", None),
    ],
)
def test_provisioning_clones_the_repo(
    harness: HarnessFactory,
    served: Remote,
    branch: str | None,
    new_branch: bool,
    content: str,
    head: str | None,
) -> None:
    h = harness()
    body: dict[str, object] = {"cloneUrl": served.url, "isNewBranch": new_branch}
    if branch:
        body["branch"] = branch
    created = h.create(**body)
    assert created["cloneUrl"] == served.url
    if new_branch:
        assert created["branch"].startswith("agent/") and created["baseBranch"] == branch
        head = created["branch"]
    s = h.wait_state(created["id"], "active")
    assert s["branch"] == head
    assert _read(h, s, "README.md").decode() == content
    assert _read(h, s, ".git/HEAD").decode().strip() == f"ref: refs/heads/{head}"


def test_a_rerun_after_a_crash_starts_clean(harness: HarnessFactory, served: Remote) -> None:
    """DBOS runs a step again when the process died inside it: the second run must not trip
    over what the first left (a bare clone, a staging tree, a changed workspace)."""
    h = harness()
    s = h.wait_state(h.create(cloneUrl=served.url)["id"], "active")
    leftover = remote.bare_path(h.settings, s["id"]).with_name(f".{s['id']}.dead.staging")
    leftover.mkdir()

    async def again() -> str:
        box = await h.sandbox_of(s)
        await box.write_file("junk.txt", b"from the first run")
        await remote.provision(h.settings, h.backend.db, Vault(h.settings), s["id"], box)
        done = await box.exec("git status --porcelain; git rev-parse HEAD; ls")
        return done.stdout

    status = asyncio.run(again()).splitlines()
    assert status == [served.sha("main"), "README.md", "src"]
    assert not leftover.exists()


def _failed(h: Harness, **body: object) -> str:
    s = h.wait_state(h.create(**body)["id"], "failed")
    assert "Traceback" not in s["lifecycleError"]
    return str(s["lifecycleError"])


def test_an_unreachable_repo_fails_with_a_readable_error(harness: HarnessFactory) -> None:
    h = harness()
    port = free_port()  # nothing listens there
    error = _failed(h, cloneUrl=f"git://127.0.0.1:{port}/nope.git")
    assert error.startswith("git clone failed: ")
    assert str(h.settings.data_dir) not in error
