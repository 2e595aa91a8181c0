"""``agent-sessions``: run the service and manage accounts, keys and organizations (README,
Management commands)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from agent_sessions import datadir, logs
from agent_sessions.auth import display_prefix, generate_key, hash_key
from agent_sessions.exceptions import AgentSessionsError
from agent_sessions.settings import Settings, load_settings
from agent_sessions.store import Database, accounts, upgrade

app = typer.Typer(
    help="Agent Sessions: LLM coding agents in sandboxed sessions.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
orgs_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(orgs_app, name="orgs")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _database(settings: Settings) -> Database:
    datadir.prepare(settings)
    db = Database(settings.resolved_database_url)
    upgrade(db)
    return db


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)


def _fail(err: AgentSessionsError) -> None:
    typer.echo(f"error: {err.message}", err=True)
    raise typer.Exit(1)


def _configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)  # README, Operating


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Migrate the database, then serve the HTTP API."""
    import uvicorn

    settings = load_settings()
    db = _database(settings)
    with db.read() as s:
        if accounts.count_accounts(s) == 0:
            typer.echo(
                "No accounts yet. Create one (prints an API key, shown once):\n"
                "  .venv/bin/agent-sessions accounts create --name me --json",
                err=True,
            )
    db.dispose()
    _configure_logging(settings)
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
def worker() -> None:
    """Run lifecycle and agent workflows without serving HTTP (scale-out: one per host or core).

    Give each process its own ``AGENT_SESSIONS_EXECUTOR_ID``; with PostgreSQL, any number of
    ``serve`` and ``worker`` processes share the work (agent turns through the queue when
    ``AGENT_SESSIONS_AGENT_GLOBAL_CONCURRENCY`` is set; otherwise the accepting ``serve`` runs
    them).
    """
    import signal
    import threading

    from agent_sessions.agent.service import Turns  # registers the agent workflows
    from agent_sessions.heap import freeze_startup_heap
    from agent_sessions.lifecycle import Lifecycle

    settings = load_settings()
    db = _database(settings)
    _configure_logging(settings)
    lifecycle = Lifecycle(settings, db)
    lifecycle.on_start(Turns(settings, db).reconcile)
    lifecycle.start()
    freeze_startup_heap()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"worker {settings.executor_id} running; Ctrl-C to stop", err=True)
    stop.wait()
    lifecycle.stop()
    db.dispose()


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    _database(load_settings())
    typer.echo("database is up to date")


@app.command()
def chat(
    session: Annotated[
        str | None, typer.Option("--session", help="Use this session (default: a new one).")
    ] = None,
    chat_id: Annotated[
        str | None, typer.Option("--chat", help="Use this chat (default: the session's first).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model id, e.g. openai/gpt-5.4.")
    ] = None,
    url: Annotated[
        str, typer.Option("--url", envvar="AGENT_SESSIONS_URL", help="Server base URL.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="AGENT_SESSIONS_API_KEY", show_default=False, help="API key."
        ),
    ] = None,
) -> None:
    """Chat with an agent from the terminal, over the HTTP API of a running server.

    Ctrl-C stops a running turn; /exit or Ctrl-D quits.
    """
    from agent_sessions.client.repl import ChatOptions, run

    options = ChatOptions(
        url=url, api_key=api_key, session_id=session, chat_id=chat_id, model=model
    )
    code = run(options)
    if code:
        raise typer.Exit(code)


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    jwt_subject: Annotated[
        str | None, typer.Option(help="JWT 'sub' that acts as this account.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an account and its first API key (the key is printed once)."""
    db = _database(load_settings())
    key = generate_key()
    try:
        with db.write() as s:
            account = accounts.create_account(s, name=name, jwt_subject=jwt_subject)
            api_key = accounts.add_key(
                s, account_id=account.id, prefix=display_prefix(key), key_hash=hash_key(key)
            )
    except AgentSessionsError as err:
        _fail(err)
    _emit(
        as_json,
        {"accountId": account.id, "apiKey": key, "keyId": api_key.id},
        f"account {account.id}\napi key (shown once): {key}",
    )


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option("--account", help="Account id.")],
    as_json: JsonFlag = False,
) -> None:
    """Create another API key for an account (printed once)."""
    db = _database(load_settings())
    key = generate_key()
    try:
        with db.write() as s:
            row = accounts.add_key(
                s, account_id=account, prefix=display_prefix(key), key_hash=hash_key(key)
            )
    except AgentSessionsError as err:
        _fail(err)
    _emit(as_json, {"keyId": row.id, "apiKey": key}, f"key {row.id}\napi key (shown once): {key}")


@keys_app.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (prefix only; keys themselves are never stored)."""
    db = _database(load_settings())
    with db.read() as s:
        rows = accounts.list_keys(s, account)
    items = [
        {
            "keyId": k.id,
            "accountId": k.account_id,
            "prefix": k.prefix,
            "createdAt": k.created_at.isoformat(),
            "lastUsedAt": k.last_used_at.isoformat() if k.last_used_at else None,
            "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in rows
    ]
    if as_json:
        typer.echo(json.dumps({"keys": items}))
        return
    for i in items:
        state = "revoked" if i["revokedAt"] else "active"
        typer.echo(
            f"{i['keyId']}  {i['prefix']}…  {i['accountId']}  {state}  last used {i['lastUsedAt']}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id.")], as_json: JsonFlag = False
) -> None:
    """Revoke a key; requests using it get 401 from then on."""
    db = _database(load_settings())
    try:
        with db.write() as s:
            accounts.revoke_key(s, key_id)
    except AgentSessionsError as err:
        _fail(err)
    _emit(as_json, {"keyId": key_id, "revoked": True}, f"revoked {key_id}")


@orgs_app.command("create")
def orgs_create(
    name: Annotated[str, typer.Option("--name", help="Organization name.")],
    as_json: JsonFlag = False,
) -> None:
    """Create an organization."""
    db = _database(load_settings())
    with db.write() as s:
        org = accounts.create_organization(s, name=name)
    _emit(as_json, {"organizationId": org.id}, f"organization {org.id}")


@orgs_app.command("add-member")
def orgs_add_member(
    org: Annotated[str, typer.Option("--org", help="Organization id.")],
    account: Annotated[str, typer.Option("--account", help="Account id.")],
    as_json: JsonFlag = False,
) -> None:
    """Add an account to an organization (idempotent)."""
    db = _database(load_settings())
    try:
        with db.write() as s:
            accounts.add_member(s, organization_id=org, account_id=account)
    except AgentSessionsError as err:
        _fail(err)
    _emit(as_json, {"organizationId": org, "accountId": account}, f"added {account} to {org}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
