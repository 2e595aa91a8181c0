"""A real ``serve`` subprocess with local sandboxes and the scripted model stand-in: the setup
the end-to-end modules (client, chat CLI, console, observability) share."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import CLI, Server, start_server, stop_server, traversable_tmpdir
from tests.sandbox.conftest import UID_BASE, local_unavailable_reason
from tests.support.model_server import ModelServer, run_model_server


@contextlib.contextmanager
def serve_with_stand_in(
    prefix: str, uid_offset: int, uid_count: int = 20, **env: str
) -> Iterator[tuple[Server, ModelServer]]:
    """``serve`` on a fresh SQLite database in a temp dir the sandbox uids can traverse, its
    sandboxes on host uids ``UID_BASE + uid_offset`` on (a window of its own: modules run in
    parallel), the stand-in as its model; ``env`` adds settings. Skips where local sandboxes
    cannot run."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with traversable_tmpdir(prefix) as data_dir, run_model_server() as model:
        server = start_server(
            data_dir,
            OPENAI_API_KEY="test",
            OPENAI_BASE_URL=model.base_url,
            AGENT_SESSIONS_SANDBOX_UID_BASE=str(UID_BASE + uid_offset),
            AGENT_SESSIONS_SANDBOX_UID_COUNT=str(uid_count),
            **env,
        )
        try:
            yield server, model
        finally:
            stop_server(server)


def create_account(server: Server, name: str) -> str:
    """A new account's API key, made with the CLI as an operator would."""
    out = subprocess.run(
        [CLI, "accounts", "create", "--name", name, "--json"],
        env=server.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key: str = json.loads(out.stdout)["apiKey"]
    return key
