"""Helpers of the repository tests: remotes to clone, and git run in a session's sandbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_sessions.sandbox import ExecResult, provider_from_settings
from tests.agent.conftest import Agents
from tests.support.git_server import git, git_daemon, make_bare
from tests.support.waiting import until

FILES = {"README.md": "main branch\n", "src/app.py": "print('hi')\n"}
TOKEN = "ghp_Th1sIsTheAccountsOwnT0ken0000000000"
OPERATOR = "ghp_Th1sIsTheOperatorsT0ken111111111111"


@dataclass
class Remote:
    """A served bare repository ``demo.git`` with ``main`` (default) and ``feature``."""

    root: Path
    work: Path
    """A clone to push more commits from (as another user would)."""
    base: str

    @property
    def url(self) -> str:
        return f"{self.base}/demo.git"

    @property
    def bare(self) -> Path:
        return self.root / "demo.git"

    def sha(self, ref: str) -> str:
        return git(self.bare, "rev-parse", ref).strip()


def add_feature_branch(work: Path) -> None:
    git(work, "checkout", "-q", "-b", "feature")
    (work / "README.md").write_text("feature branch\n")
    git(work, "commit", "-q", "-am", "feature")
    git(work, "push", "-q", "origin", "feature")
    git(work, "checkout", "-q", "main")


def forge_root(tmp_path: Path) -> Path:
    """``<tmp>/forge/acme/widgets.git`` (``main`` and ``feature``), to serve over HTTP."""
    root = tmp_path / "forge"
    work = make_bare(root / "acme", "widgets", FILES)
    add_feature_branch(work)
    return root


@contextlib.contextmanager
def daemon_remote(root: Path) -> Iterator[Remote]:
    work = make_bare(root, "demo", FILES)
    add_feature_branch(work)
    with git_daemon(root) as base:
        yield Remote(root, work, base)


def run(agents: Agents, session: dict[str, Any], script: str) -> ExecResult:
    """``script`` in the session's (active) sandbox."""
    state = session["sandboxState"]
    assert state is not None, session

    async def go() -> ExecResult:
        provider = provider_from_settings(agents.settings, state["provider"])
        box = await provider.connect(state)
        return await box.exec(script, timeout=60)

    return asyncio.run(go())


def out(agents: Agents, session: dict[str, Any], script: str) -> str:
    result = run(agents, session, script)
    assert result.exit_code == 0, (script, result.stdout, result.stderr)
    return result.stdout


def session(agents: Agents, sid: str) -> dict[str, Any]:
    r = agents.client.get(f"/api/sessions/{sid}", headers=agents.account.headers)
    assert r.status_code == 200, r.text
    return r.json()["session"]  # type: ignore[no-any-return]


def create(agents: Agents, **body: Any) -> dict[str, Any]:
    """Create a session and wait until it is active (or failed); the session."""
    r = agents.client.post("/api/sessions", json=body, headers=agents.account.headers)
    assert r.status_code == 200, r.text
    return r.json()["session"]  # type: ignore[no-any-return]


def settled(agents: Agents, sid: str, timeout: float = 60) -> dict[str, Any]:
    """The session once provisioning is over (active or failed)."""
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(session(agents, sid))
        return found["lifecycleState"] not in ("provisioning", "restoring")

    until(f"{sid} to leave provisioning", done, timeout)
    return found
