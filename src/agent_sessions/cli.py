"""``agent-sessions``: run the service and manage accounts, keys and organizations (README,
Management commands).

Every failure the operator can fix (a database that is down, a port in use, an unknown id) is
one line on stderr and a non-zero exit, never a traceback; each management command prints
text, or one JSON object with ``--json``.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy.orm import Session

from agent_sessions import datadir, logs
from agent_sessions.auth import display_prefix, generate_key, hash_key
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.faults import FAULT_ENV
from agent_sessions.settings import Settings, load_settings, unknown_variables
from agent_sessions.store import Database, accounts, admin, upgrade
from agent_sessions.store.migrate import head_revision
from agent_sessions.store.models import ApiKey

URL_VARIABLE = "AGENT_SESSIONS_URL"
API_KEY_VARIABLE = "AGENT_SESSIONS_API_KEY"
"""Read by ``chat`` (the client side), not by the service's settings."""


def _typer(help: str) -> typer.Typer:
    # Plain help (no rich panels): rich mode labels every flag ``<bool>``, --help included.
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


app = _typer("Agent Sessions: LLM coding agents in sandboxed sessions.")
accounts_app = _typer("Manage accounts.")
keys_app = _typer("Manage API keys.")
orgs_app = _typer("Manage organizations.")
sessions_app = _typer("List sessions (every account's).")
runs_app = _typer("List agent turns (every account's).")
hosts_app = _typer("The processes sharing the database (README, Deployment).")
workflows_app = _typer("DBOS workflows: list them; hand a lost host's work to the others.")
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(orgs_app, name="orgs")
app.add_typer(sessions_app, name="sessions")
app.add_typer(runs_app, name="runs")
app.add_typer(hosts_app, name="hosts")
app.add_typer(workflows_app, name="workflows")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
AccountId = Annotated[str, typer.Option("--account", metavar="ID", help="Account id.")]


def _say(line: str) -> None:
    typer.echo(f"agent-sessions: {line}", err=True)


def _fail(message: str) -> NoReturn:
    _say(message)
    raise typer.Exit(1)


@app.callback()
def _startup() -> None:
    # Settings ignore variables they do not know, so a misspelt one would go unnoticed.
    for warning in unknown_variables(
        os.environ, also_read=(URL_VARIABLE, API_KEY_VARIABLE, FAULT_ENV)
    ):
        _say(f"warning: {warning}")


def _database(settings: Settings) -> Database:
    """The database, reachable and migrated; a data directory that cannot be made or a database
    that cannot be reached ends the command with one line (:func:`main`)."""
    try:
        datadir.prepare(settings)
        db = Database(settings.resolved_database_url)
    except OSError as err:
        _fail(f"cannot use {err.filename or settings.data_dir}: {err.strerror or err}")
    db.check()
    upgrade(db)
    return db


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    """One JSON object (keys named as in the HTTP API: ``accountId``, ``keyId``…) or text."""
    typer.echo(json.dumps(data) if as_json else text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell, under a header row."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _minute(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "keyId": key.id,
        "accountId": key.account_id,
        "prefix": key.prefix,
        "createdAt": _iso(key.created_at),
        "lastUsedAt": _iso(key.last_used_at),
        "revokedAt": _iso(key.revoked_at),
    }


def _check_port(host: str, port: int, flag: str = "--port") -> None:
    """Bind each address ``host`` names, as uvicorn will, and let go: a taken port stops
    ``serve`` before it migrates and starts workflows, rather than after (a port taken in
    between still fails in uvicorn, with its own message)."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host or None,  # "": every interface, as asyncio reads it
            port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        ):
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio binds it
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            _fail(f"cannot serve on {host}:{port}: address already in use (choose another {flag})")
        _fail(f"cannot serve on {host}:{port}: {err.strerror or err}")


def _configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)  # README, Operating


@app.command()
def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
) -> None:
    """Migrate the database, then serve the HTTP API."""
    import uvicorn

    from agent_sessions.lifecycle.hosts import HostMonitor

    settings = load_settings()
    _check_port(host, port)
    db = _database(settings)
    with db.read() as s:
        if accounts.count_accounts(s) == 0:
            typer.echo(
                "No accounts yet. Create one (prints an API key, shown once):\n"
                "  .venv/bin/agent-sessions accounts create --name me --json",
                err=True,
            )
    refusal = HostMonitor(settings, db).check()  # one line, not a server's traceback
    db.dispose()
    if refusal is not None:  # a configuration that cannot work, like an invalid setting: 2
        _say(refusal)
        raise typer.Exit(2)
    _configure_logging(settings)
    # Where the other processes forward the requests for sessions whose sandbox is here.
    reachable = socket.gethostname() if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    reachable = f"[{reachable}]" if ":" in reachable else reachable
    os.environ.setdefault("AGENT_SESSIONS_ADVERTISE_URL", f"http://{reachable}:{port}")
    uvicorn.run(
        "agent_sessions.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        log_config=None,  # its loggers write through ours (logs.configure)
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
        # asyncio's loop, not uvloop: under load uvloop accepted about one new connection per
        # loop iteration, so clients connecting to a busy server waited seconds (64 connections
        # opened at once: p99 1.3 s against 0.1 s; docs/adr/0008). Throughput is the same here.
        loop="asyncio",
    )


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(metavar="PORT", help="Serve Prometheus metrics (GET /metrics) on this port."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface for --metrics-port.")
    ] = "127.0.0.1",
) -> None:
    """Run lifecycle and agent workflows without serving the API.

    For scale-out with vercel sandboxes (with local ones on PostgreSQL it is refused: no
    request could reach a sandbox it made). Give each process its own
    AGENT_SESSIONS_EXECUTOR_ID. Agent turns go through the shared queue when
    AGENT_SESSIONS_AGENT_GLOBAL_CONCURRENCY is set, else the serve that accepted them runs them.
    With --metrics-port it answers GET /metrics as serve does, under the same
    AGENT_SESSIONS_METRICS_ENABLED and AGENT_SESSIONS_METRICS_TOKEN.
    """
    import signal
    import threading

    from agent_sessions.agent.service import Turns  # registers the agent workflows
    from agent_sessions.heap import freeze_startup_heap
    from agent_sessions.lifecycle import Lifecycle
    from agent_sessions.lifecycle.hosts import StartupRefused
    from agent_sessions.metrics_server import MetricsServer

    settings = load_settings()
    if metrics_port is not None:
        if not settings.metrics_enabled:  # asked for and turned off: say so rather than guess
            _say("--metrics-port is given but AGENT_SESSIONS_METRICS_ENABLED is false")
            raise typer.Exit(2)
        _check_port(metrics_host, metrics_port, "--metrics-port")
    db = _database(settings)
    _configure_logging(settings)
    lifecycle = Lifecycle(settings, db, serves_http=False)
    agent_turns = Turns(settings, db)
    lifecycle.on_start(agent_turns.reconcile)
    lifecycle.on_takeover(agent_turns.adopt)
    try:
        lifecycle.start()
    except StartupRefused as err:
        _say(err.message)
        raise typer.Exit(2) from None
    freeze_startup_heap()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scraped = None
    if metrics_port is not None:
        scraped = MetricsServer(settings, db, metrics_host, metrics_port)
        typer.echo(f"metrics on http://{metrics_host}:{metrics_port}/metrics", err=True)
    typer.echo(f"worker {settings.executor_id} running; Ctrl-C to stop", err=True)
    stop.wait()
    if scraped is not None:
        scraped.stop()
    lifecycle.stop()
    db.dispose()


@app.command()
def migrate(as_json: JsonFlag = False) -> None:
    """Create or upgrade the database schema."""
    _database(load_settings())
    revision = head_revision()
    _emit(as_json, {"revision": revision}, f"database is up to date (revision {revision})")


@app.command()
def chat(
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="ID",
            help="Use this session, its conversation shown (default: the one used last).",
        ),
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="Start a new session instead of the one used last.")
    ] = False,
    chat_id: Annotated[
        str | None,
        typer.Option("--chat", metavar="ID", help="Use this chat (default: the session's first)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", metavar="MODEL", help="Model id, e.g. openai/gpt-5.4."),
    ] = None,
    url: Annotated[
        str, typer.Option("--url", envvar=URL_VARIABLE, metavar="URL", help="Server base URL.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=API_KEY_VARIABLE,
            metavar="KEY",
            show_default=False,
            help="API key.",
        ),
    ] = None,
) -> None:
    """Chat with an agent in the terminal, through a running server.

    Without --session it continues the session used last with this server and key. Lines
    starting with / are commands (/help lists them); Ctrl-C stops a running turn, Ctrl-D quits.
    """
    from agent_sessions.terminal.repl import ChatOptions, run

    options = ChatOptions(
        url=url, api_key=api_key, session_id=session, chat_id=chat_id, model=model, new=new
    )
    code = run(options)
    if code:
        raise typer.Exit(code)


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Display name.")] = None,
    jwt_subject: Annotated[
        str | None, typer.Option(metavar="SUB", help="JWT 'sub' that acts as this account.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an account and its first API key (the key is printed once)."""
    db = _database(load_settings())
    key = generate_key()
    with db.write() as s:
        account = accounts.create_account(s, name=name, jwt_subject=jwt_subject)
        row = accounts.add_key(
            s, account_id=account.id, prefix=display_prefix(key), key_hash=hash_key(key)
        )
    _emit(
        as_json,
        {"accountId": account.id, "apiKey": key, "keyId": row.id},
        f"account {account.id}\nkey {row.id}\napi key (shown once): {key}",
    )


@keys_app.command("create")
def keys_create(account: AccountId, as_json: JsonFlag = False) -> None:
    """Create another API key for an account (printed once)."""
    db = _database(load_settings())
    key = generate_key()
    with db.write() as s:
        row = accounts.add_key(
            s, account_id=account, prefix=display_prefix(key), key_hash=hash_key(key)
        )
    _emit(
        as_json,
        {"accountId": account, "apiKey": key, "keyId": row.id},
        f"key {row.id}\napi key (shown once): {key}",
    )


@keys_app.command("list")
def keys_list(
    account: Annotated[
        str | None, typer.Option("--account", metavar="ID", help="Only this account's keys.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (prefix only; keys themselves are never stored)."""
    db = _database(load_settings())
    with db.read() as s:
        rows = accounts.list_keys(s, account)
    if as_json:
        typer.echo(json.dumps({"keys": [_key_json(k) for k in rows]}))
        return
    _table(
        ("KEY ID", "PREFIX", "ACCOUNT ID", "STATE", "CREATED (UTC)", "LAST USED (UTC)"),
        [
            (
                k.id,
                f"{k.prefix}…",
                k.account_id,
                "revoked" if k.revoked_at else "active",
                _minute(k.created_at),
                _minute(k.last_used_at),
            )
            for k in rows
        ],
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="Key id.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key; requests using it get 401 from then on."""
    db = _database(load_settings())
    with db.write() as s:
        row = accounts.revoke_key(s, key_id)
    _emit(as_json, _key_json(row), f"revoked {key_id}")


@orgs_app.command("create")
def orgs_create(
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Organization name.")],
    as_json: JsonFlag = False,
) -> None:
    """Create an organization."""
    db = _database(load_settings())
    with db.write() as s:
        org = accounts.create_organization(s, name=name)
    _emit(as_json, {"organizationId": org.id}, f"organization {org.id}")


@orgs_app.command("add-member")
def orgs_add_member(
    org: Annotated[str, typer.Option("--org", metavar="ID", help="Organization id.")],
    account: AccountId,
    as_json: JsonFlag = False,
) -> None:
    """Add an account to an organization (idempotent)."""
    db = _database(load_settings())
    with db.write() as s:
        accounts.add_member(s, organization_id=org, account_id=account)
    _emit(as_json, {"organizationId": org, "accountId": account}, f"added {account} to {org}")


# The operators' listings' filters, declared once: each flag reads the same in every listing.
Limit = Annotated[int, typer.Option("--limit", metavar="N", min=1, help="At most N, newest first.")]
OnlyAccount = Annotated[
    str | None, typer.Option("--account", metavar="ID", help="Only this account's.")
]
SessionState = Annotated[
    str | None,
    typer.Option("--state", metavar="STATE", help="active, hibernated, failed… or archived."),
]
RunStatus = Annotated[
    str | None,
    typer.Option("--status", metavar="STATUS", help="queued, running, completed, failed…"),
]
WorkflowStatus = Annotated[
    str | None,
    typer.Option("--status", metavar="STATUS", help="PENDING, ENQUEUED, SUCCESS, ERROR…"),
]
OnlyExecutor = Annotated[
    str | None, typer.Option("--executor", metavar="ID", help="Only this executor's.")
]


def _read(fn: Callable[[Session], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """An operator's listing, read from the database (reachable and migrated, or one line)."""
    db = _database(load_settings())
    with db.read() as s:
        return fn(s)


def _listing(as_json: bool, name: str, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """``{name: rows}`` as JSON, or the ``columns`` (header → key) as a table."""
    if as_json:
        typer.echo(json.dumps({name: rows}))
        return
    _table(tuple(columns), [tuple(_cell(row[key]) for key in columns.values()) for row in rows])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if len(text) >= 19 and text[4:5] == "-" and text[10:11] == "T":  # an ISO time: to the minute
        return text[:16].replace("T", " ")
    return text if len(text) <= 60 else text[:59] + "…"


@accounts_app.command("list")
def accounts_list(as_json: JsonFlag = False) -> None:
    """List accounts, with their active keys and sessions not archived."""
    rows = _read(admin.accounts)
    _listing(as_json, "accounts", rows, {
        "ACCOUNT ID": "accountId", "NAME": "name", "KEYS": "activeKeys",
        "SESSIONS": "sessions", "CREATED (UTC)": "createdAt",
    })  # fmt: skip


@orgs_app.command("list")
def orgs_list(as_json: JsonFlag = False) -> None:
    """List organizations and how many members each has."""
    rows = _read(admin.organizations)
    _listing(as_json, "organizations", rows, {
        "ORGANIZATION ID": "organizationId", "NAME": "name", "MEMBERS": "members",
        "CREATED (UTC)": "createdAt",
    })  # fmt: skip


@sessions_app.command("list")
def sessions_list(
    account: OnlyAccount = None,
    state: SessionState = None,
    limit: Limit = admin.DEFAULT_LIMIT,
    as_json: JsonFlag = False,
) -> None:
    """List sessions, the last changed first, with the host of their sandbox."""
    rows = _read(lambda s: admin.sessions(s, account_id=account, state=state, limit=limit))
    _listing(as_json, "sessions", rows, {
        "SESSION ID": "sessionId", "ACCOUNT ID": "accountId", "STATUS": "status",
        "STATE": "lifecycleState", "HOST": "host", "UPDATED (UTC)": "updatedAt",
        "TITLE": "title",
    })  # fmt: skip


@runs_app.command("list")
def runs_list(
    account: OnlyAccount = None,
    status: RunStatus = None,
    limit: Limit = admin.DEFAULT_LIMIT,
    as_json: JsonFlag = False,
) -> None:
    """List agent turns, newest first, with the process that accepted each."""
    rows = _read(lambda s: admin.runs(s, account_id=account, status=status, limit=limit))
    _listing(as_json, "runs", rows, {
        "RUN ID": "runId", "SESSION ID": "sessionId", "STATUS": "status",
        "ACCEPTED BY": "acceptedBy", "MODEL": "modelId", "CREATED (UTC)": "createdAt",
        "ERROR": "error",
    })  # fmt: skip


@hosts_app.command("list")
def hosts_list(as_json: JsonFlag = False) -> None:
    """List the processes (hosts) recorded in the database and their last heartbeat."""
    rows = _read(admin.hosts)
    _listing(as_json, "hosts", rows, {
        "EXECUTOR ID": "executorId", "STATE": "state", "HOSTNAME": "hostname", "PID": "pid",
        "URL": "url", "HEARTBEAT (UTC)": "heartbeatAt", "TAKEN OVER BY": "takenOverBy",
    })  # fmt: skip


@workflows_app.command("list")
def workflows_list(
    status: WorkflowStatus = None,
    executor: OnlyExecutor = None,
    limit: Limit = admin.DEFAULT_LIMIT,
    as_json: JsonFlag = False,
) -> None:
    """List DBOS workflows (agent turns, lifecycle work), newest first."""
    import sqlalchemy.exc

    from agent_sessions.lifecycle.runtime import workflow_client

    settings = load_settings()
    _database(settings).dispose()  # reachable and migrated, or one line
    client = workflow_client(settings)
    try:
        found = client.list_workflows(
            status=status, executor_id=executor, limit=limit, sort_desc=True,
            load_input=False, load_output=False,
        )  # fmt: skip
    except sqlalchemy.exc.DBAPIError as err:  # DBOS makes its tables at a process's first start
        if "no such table" not in str(err) and "does not exist" not in str(err):
            raise
        found = []
    finally:
        client.destroy()
    rows = [
        {"workflowId": w.workflow_id, "name": w.name, "status": w.status,
         "executorId": w.executor_id, "queue": w.queue_name,
         "createdAt": _iso(_epoch(w.created_at)), "updatedAt": _iso(_epoch(w.updated_at))}
        for w in found
    ]  # fmt: skip
    _listing(as_json, "workflows", rows, {
        "WORKFLOW ID": "workflowId", "NAME": "name", "STATUS": "status",
        "EXECUTOR": "executorId", "QUEUE": "queue", "CREATED (UTC)": "createdAt",
    })  # fmt: skip


def _epoch(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


@workflows_app.command("recover")
def workflows_recover(
    executor: Annotated[str, typer.Argument(metavar="EXECUTOR_ID", help="The lost host's id.")],
    as_json: JsonFlag = False,
) -> None:
    """Hand a lost (or retired) host's work to the live hosts: one of them takes it over at its
    next heartbeat, as after a silence (README, Deployment). Refused while that host beats."""
    from agent_sessions.store import hosts

    settings = load_settings()
    db = _database(settings)
    alive_after = datetime.now(UTC) - timedelta(seconds=settings.host_dead_after_seconds)
    with db.write() as s:
        outcome = hosts.release(s, executor, alive_after=alive_after)
    if outcome == "live":
        _fail(f"host {executor!r} is live (it beat in the last "
              f"{settings.host_dead_after_seconds:g} s): stop it first")  # fmt: skip
    text = {
        "gone": f"host {executor} was taken over already",
        "released": f"host {executor} released: a live host takes its work over within "
        f"{settings.host_heartbeat_seconds:g} s",
    }[outcome]
    _emit(as_json, {"executorId": executor, "outcome": outcome}, text)


def main() -> None:
    try:
        app()
    except AgentSessionsError as err:  # an unknown id, a database that is down: one line
        _say(err.message)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
