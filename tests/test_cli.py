"""``agent-sessions`` management commands against a real database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import make_url
from typer.testing import CliRunner

from agent_sessions.cli import app
from agent_sessions.settings import Settings, unknown_variables
from agent_sessions.store import Database
from agent_sessions.store.models import Host
from tests.conftest import CLI, PG_ADMIN_URL, _postgres_unreachable_reason, free_port


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
    out = run(env, *args, "--json").stdout
    assert out.count("\n") == 1, out  # one object, on one line
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent-sessions: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command, subcommands included (``("keys", "list")``)."""
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


KEY_FIELDS = {"keyId", "accountId", "prefix", "createdAt", "lastUsedAt", "revokedAt"}


def test_accounts_keys_orgs(env: dict[str, str]) -> None:
    acct = as_json(env, "accounts", "create", "--name", "me")
    assert set(acct) == {"accountId", "keyId", "apiKey"} and acct["apiKey"].startswith("ask_")
    key = as_json(env, "keys", "create", "--account", acct["accountId"])
    assert set(key) == {"accountId", "keyId", "apiKey"} and key["apiKey"] != acct["apiKey"]
    listed = as_json(env, "keys", "list", "--account", acct["accountId"])["keys"]
    assert len(listed) == 2 and all(set(k) == KEY_FIELDS for k in listed)
    assert all(k["revokedAt"] is None for k in listed)
    assert acct["apiKey"] not in json.dumps(listed)  # only prefixes are listed
    revoked = as_json(env, "keys", "revoke", key["keyId"])
    assert set(revoked) == KEY_FIELDS and revoked["revokedAt"] is not None
    listed = {k["keyId"]: k for k in as_json(env, "keys", "list")["keys"]}
    assert listed[key["keyId"]] == revoked
    org = as_json(env, "orgs", "create", "--name", "acme")
    assert set(org) == {"organizationId"}
    member = ["--org", org["organizationId"], "--account", acct["accountId"]]
    added = as_json(env, "orgs", "add-member", *member)
    assert added == {"organizationId": org["organizationId"], "accountId": acct["accountId"]}
    assert as_json(env, "orgs", "add-member", *member) == added
    assert set(as_json(env, "migrate")) == {"revision"}


def test_operator_listings_and_recovering_a_lost_host(env: dict[str, str]) -> None:
    """Every account's rows, which the API never shows one account; ``workflows recover``
    hands a host that no longer beats to the others, and refuses one that beats."""
    acct = as_json(env, "accounts", "create", "--name", "ops")
    org = as_json(env, "orgs", "create", "--name", "acme")
    run(env, "orgs", "add-member", "--org", org["organizationId"], "--account", acct["accountId"])
    assert as_json(env, "accounts", "list")["accounts"] == [{
        "accountId": acct["accountId"], "name": "ops", "activeKeys": 1, "sessions": 0,
        "createdAt": ANY_TIME,
    }]  # fmt: skip
    orgs = as_json(env, "orgs", "list")["organizations"]
    assert [(o["organizationId"], o["members"]) for o in orgs] == [(org["organizationId"], 1)]
    assert as_json(env, "sessions", "list", "--state", "active") == {"sessions": []}
    assert as_json(env, "runs", "list", "--status", "running") == {"runs": []}
    assert as_json(env, "workflows", "list") == {"workflows": []}
    table = run(env, "accounts", "list").stdout.splitlines()
    assert table[0].split() == ["ACCOUNT", "ID", "NAME", "KEYS", "SESSIONS", "CREATED", "(UTC)"]

    settings = Settings(data_dir=Path(env["AGENT_SESSIONS_DATA_DIR"]))
    db = Database(settings.resolved_database_url)
    old = datetime.now(UTC) - timedelta(minutes=5)
    with db.write() as s:
        # busy's beat lies ahead: the CLI runs below take seconds each on a loaded machine,
        # and a beat of now could fall silent (past the host timeout) before the last one
        for name, beat in (("lost", old), ("busy", datetime.now(UTC) + timedelta(hours=1))):
            s.add(Host(
                executor_id=name, instance="i", hostname="h", pid=1, url=None,
                sandbox_provider="local", state="stopped" if name == "lost" else "live",
                started_at=old, heartbeat_at=beat,
            ))  # fmt: skip
    hosts = {h["executorId"]: h for h in as_json(env, "hosts", "list")["hosts"]}
    assert hosts["lost"]["state"] == "stopped" and hosts["busy"]["state"] == "live"
    released = as_json(env, "workflows", "recover", "lost")
    assert released == {"executorId": "lost", "outcome": "released"}
    with db.read() as s:  # live again, and silent: the next live host's look takes it over
        row = s.get(Host, "lost")
        assert row is not None and row.state == "live" and row.heartbeat_at.year == 1970
    one_line_error(run(env, "workflows", "recover", "busy", ok=False), "'busy' is live")
    one_line_error(run(env, "workflows", "recover", "nope", ok=False), "No host 'nope'")
    db.dispose()


class _AnyTime:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and datetime.fromisoformat(other).tzinfo is not None


ANY_TIME = _AnyTime()


NO_RESULT = {("serve",), ("worker",), ("chat",)}
"""Commands without a result to print: they run until stopped, or talk with a person."""


def test_every_command_with_a_result_takes_json() -> None:
    """The README says so; ``migrate`` once printed text only."""
    root = typer.main.get_command(app)
    for path in commands():
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        options = {opt for param in command.params for opt in param.opts}
        assert ("--json" in options) == (path not in NO_RESULT), path


def test_help_is_plain_text() -> None:
    """No reStructuredText from docstrings, and no ``<bool>`` after flags (typer's rich help
    printed one after every flag, ``--help`` included)."""
    runner = CliRunner()
    for path in [(), *commands(), ("accounts",), ("keys",), ("orgs",)]:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        for markup in ("``", ":func:", ":meth:", ":class:", "<bool>"):
            assert markup not in result.output, (path, markup, result.output)


def test_keys_list_has_a_header_row(env: dict[str, str]) -> None:
    acct = as_json(env, "accounts", "create")
    header, row = run(env, "keys", "list").stdout.splitlines()
    assert header.startswith("KEY ID") and row.startswith(acct["keyId"])
    for column, value in (("ACCOUNT ID", acct["accountId"]), ("STATE", "active")):
        assert row[header.index(column) :].startswith(value), (header, row)  # aligned


def test_unknown_ids_fail_cleanly(env: dict[str, str]) -> None:
    one_line_error(run(env, "keys", "create", "--account", "nope", ok=False), "not found")
    one_line_error(run(env, "keys", "revoke", "nope", "--json", ok=False), "not found")


DATABASE_COMMANDS = [
    ["migrate"],
    ["serve", "--port", "PORT"],
    ["worker"],
    ["accounts", "create"],
    ["keys", "create", "--account", "a"],
    ["keys", "list"],
    ["keys", "revoke", "k"],
    ["orgs", "create", "--name", "o"],
    ["orgs", "add-member", "--org", "o", "--account", "a"],
]


def with_port(command: list[str]) -> list[str]:
    return [str(free_port()) if arg == "PORT" else arg for arg in command]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_missing_postgres_database_is_one_line(env: dict[str, str], command: list[str]) -> None:
    if reason := _postgres_unreachable_reason():
        pytest.skip(reason)
    url = make_url(PG_ADMIN_URL).set(database="agent_sessions_no_such_db")
    env["AGENT_SESSIONS_DATABASE_URL"] = url.render_as_string(hide_password=False)
    proc = run(env, *with_port(command), ok=False)
    one_line_error(proc, "cannot connect", 'database "agent_sessions_no_such_db" does not exist')


@pytest.mark.parametrize("command", DATABASE_COMMANDS[:4], ids=" ".join)
def test_unreachable_database_is_one_line(env: dict[str, str], command: list[str]) -> None:
    env["AGENT_SESSIONS_DATABASE_URL"] = f"postgresql://u:secret@127.0.0.1:{free_port()}/db"
    proc = run(env, *with_port(command), ok=False)
    one_line_error(proc, "cannot connect", "refused", "u:***@")  # the password is not shown


def test_unusable_data_directory_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env["AGENT_SESSIONS_DATA_DIR"] = str(tmp_path / "file" / "data")
    one_line_error(run(env, "migrate", ok=False), "Not a directory")


def test_serve_checks_its_port_before_migrating(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = run(env, "serve", "--port", port, ok=False)
    one_line_error(proc, f"127.0.0.1:{port}", "address already in use")
    assert not (tmp_path / "data").exists()  # nothing migrated: not even the data directory


def test_unknown_variable_is_a_warning(env: dict[str, str]) -> None:
    proc = run({**env, "AGENT_SESSIONS_IDLE_TIMEOUT": "60"}, "migrate")
    assert proc.stderr.splitlines() == [
        "agent-sessions: warning: unknown variable AGENT_SESSIONS_IDLE_TIMEOUT ignored "
        "(did you mean AGENT_SESSIONS_IDLE_TIMEOUT_SECONDS?)"
    ]
    read = {  # read by settings (any case, prefixed provider names too), chat and the tests
        "agent_sessions_default_model": "openai/x",
        "AGENT_SESSIONS_GROQ_API_KEY": "k",
        "AGENT_SESSIONS_URL": "http://127.0.0.1:1",
        "AGENT_SESSIONS_API_KEY": "k",
        "AGENT_SESSIONS_FAULT_POINT": "none",
    }
    assert run({**env, **read}, "migrate").stderr == ""


def test_unknown_variables_name_the_closest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "AGENT_SESSIONS_DATABSE_URL": "x",  # a typo
        "AGENT_SESSIONS_GEMINI_API_KEY": "x",  # a provider's variable, prefixed
        "AGENT_SESSIONS_COLOUR": "x",  # nothing like any setting
        "AGENT_SESSIONS_DATA_DIR": "x",
        "PATH": "x",
    }
    assert unknown_variables(environ) == [
        "unknown variable AGENT_SESSIONS_COLOUR ignored",
        "unknown variable AGENT_SESSIONS_DATABSE_URL ignored "
        "(did you mean AGENT_SESSIONS_DATABASE_URL?)",
        "unknown variable AGENT_SESSIONS_GEMINI_API_KEY ignored (did you mean GEMINI_API_KEY?)",
    ]
    # What counts as known is what pydantic-settings reads, e.g. a provider's field prefixed:
    monkeypatch.setenv("AGENT_SESSIONS_GROQ_API_KEY", "k")
    assert Settings().groq_api_key is not None
    assert unknown_variables({"AGENT_SESSIONS_GROQ_API_KEY": "k"}) == []


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
