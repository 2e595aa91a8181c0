"""``agent-sessions`` management commands against a real database."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SESSIONS_")}
    e["AGENT_SESSIONS_DATA_DIR"] = str(tmp_path / "data")
    return e


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def as_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    return json.loads(run(env, *args, "--json").stdout)  # type: ignore[no-any-return]


def test_accounts_keys_orgs(env: dict[str, str]) -> None:
    acct = as_json(env, "accounts", "create", "--name", "me")
    assert set(acct) >= {"accountId", "apiKey"} and acct["apiKey"].startswith("ask_")
    key = as_json(env, "keys", "create", "--account", acct["accountId"])
    assert set(key) == {"keyId", "apiKey"} and key["apiKey"] != acct["apiKey"]
    listed = as_json(env, "keys", "list", "--account", acct["accountId"])["keys"]
    assert len(listed) == 2
    assert all(k["revokedAt"] is None for k in listed)
    assert acct["apiKey"] not in json.dumps(listed)  # only prefixes are listed
    run(env, "keys", "revoke", key["keyId"])
    listed = {k["keyId"]: k for k in as_json(env, "keys", "list")["keys"]}
    assert listed[key["keyId"]]["revokedAt"] is not None
    org = as_json(env, "orgs", "create", "--name", "acme")
    assert set(org) == {"organizationId"}
    run(env, "orgs", "add-member", "--org", org["organizationId"], "--account", acct["accountId"])
    run(env, "orgs", "add-member", "--org", org["organizationId"], "--account", acct["accountId"])


def test_unknown_ids_fail_cleanly(env: dict[str, str]) -> None:
    proc = run(env, "keys", "create", "--account", "nope", ok=False)
    assert proc.returncode == 1 and "not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(env, "keys", "revoke", "nope", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_jwt_subject_must_name_one_account(env: dict[str, str]) -> None:
    """A JWT ``sub`` is an account id or an account's ``--jwt-subject``: a subject that is
    already either would let one token act as two accounts, so it is refused."""
    first = as_json(env, "accounts", "create", "--jwt-subject", "did:privy:abc")
    for taken in (first["accountId"], "did:privy:abc"):
        proc = run(env, "accounts", "create", "--jwt-subject", taken, ok=False)
        assert proc.returncode == 1, proc.stdout
        assert "already" in proc.stderr and "Traceback" not in proc.stderr
    listed = as_json(env, "keys", "list")["keys"]
    assert len(listed) == 1  # nothing was created by the refused commands


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AGENT_SESSIONS_IDLE_TIMEOUT_SECONDS", "soon"),
        ("AGENT_SESSIONS_SANDBOX_PROVIDER", "docker"),
        ("AGENT_SESSIONS_DATABASE_URL", "mysql://x"),
        ("AGENT_SESSIONS_DEFAULT_MODEL", "gpt"),
        ("AGENT_SESSIONS_SANDBOX_NETWORK", "maybe"),
        ("AGENT_SESSIONS_MAX_ATTACHMENT_BYTES", "1000000"),  # over the 1 MiB body as base64
        ("AGENT_SESSIONS_SANDBOX_DISK_BYTES", "1000"),  # below an ext4 image's minimum
    ],
)
def test_invalid_setting_stops_with_one_line(env: dict[str, str], var: str, value: str) -> None:
    for command in (["migrate"], ["serve", "--port", "1"]):
        proc = run({**env, var: value}, *command, ok=False)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and var in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_migrate_is_idempotent(env: dict[str, str]) -> None:
    assert "up to date" in run(env, "migrate").stdout
    assert "up to date" in run(env, "migrate").stdout


def test_worker_starts_and_stops_on_sigterm(env: dict[str, str]) -> None:
    import signal
    import time

    proc = subprocess.Popen([CLI, "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "worker local running" in line
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
