"""Shared fixtures: one database per backend per run, the ASGI app through httpx, and a real
``agent-sessions serve`` subprocess on a free port.

Every store and API test takes the ``backend`` fixture, so it runs on SQLite and, when it is
reachable, on PostgreSQL (``AGENT_SESSIONS_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``); when it is not, those runs are skipped with the
reason, which ``-ra`` prints in the summary.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agent_sessions.api import create_app
from agent_sessions.auth import display_prefix, generate_key, hash_key
from agent_sessions.lifecycle import Lifecycle
from agent_sessions.settings import Settings
from agent_sessions.store import Database, accounts, upgrade
from agent_sessions.store.lifecycle import LifecycleView

PG_ADMIN_URL = os.environ.get(
    "AGENT_SESSIONS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("agent-sessions"))


def _postgres_unreachable_reason() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as err:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(err).strip().splitlines()[0]}"


@dataclass
class Backend:
    """One database for this test run, shared by the tests (each test makes its own accounts)."""

    name: str
    url: str
    db: Database
    data_dir: Path

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {"data_dir": self.data_dir, "database_url": self.url}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def make_backend(kind: str, data_dir: Path, revision: str = "head") -> Iterator[Backend]:
    """A database of its own migrated to ``revision``: a SQLite file in ``data_dir``, or a new
    PostgreSQL database dropped afterwards (skips with the reason when PostgreSQL is
    unreachable). Both are copies of a template this process migrated once per revision."""
    if kind == "sqlite":
        path = data_dir / "agent-sessions.db"
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_template(revision), path)
        url = f"sqlite:///{path}"
        db = Database(url)
        yield Backend("sqlite", url, db, data_dir)
        db.dispose()
        return
    reason = _postgres_unreachable_reason()
    if reason:
        pytest.skip(reason)
    template = _postgres_template(revision)
    name = f"agent_sessions_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = _postgres_url(name)
    db = Database(Settings(database_url=url).resolved_database_url)
    try:
        yield Backend("postgres", url, db, data_dir)
    finally:
        db.dispose()
        _dropper.drop(name)


class _Dropper:
    """Drops the tests' PostgreSQL databases on a thread of its own, in order: a DROP DATABASE
    takes PostgreSQL a good half second (it waits on the disk), which the next test need not
    wait for. :func:`pytest_unconfigure` waits until every drop is done."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failures: list[str] = []

    def drop(self, name: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drop-databases", daemon=True)
            self._thread.start()
        self._queue.put(name)

    def _run(self) -> None:
        while (name := self._queue.get()) is not None:
            try:
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as err:
                self.failures.append(f"{name}: {err}")

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        for failure in self.failures:
            print(f"could not drop the test database {failure}", file=sys.stderr)


_dropper = _Dropper()


def _postgres_url(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


_templates: dict[tuple[str, str], str] = {}
"""(kind, revision) → this process's migrated template: a SQLite file, or a PostgreSQL database
that nothing stays connected to (``CREATE DATABASE … TEMPLATE`` needs that). Migrating each
test's database from scratch was most of the set-up of the tests that need one of their own."""


def _sqlite_template(revision: str) -> Path:
    key = ("sqlite", revision)
    if key not in _templates:
        path = Path(tempfile.mkdtemp(prefix="agent-sessions-template-")) / "template.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db, revision)
        db.dispose()  # the last connection's close checkpoints the WAL into the file
        assert not path.with_name(f"{path.name}-wal").exists(), "template WAL not checkpointed"
        _templates[key] = str(path)
    return Path(_templates[key])


def _postgres_template(revision: str) -> str:
    key = ("postgres", revision)
    if key not in _templates:
        name = f"agent_sessions_template_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _to_drop.append(name)
        db = Database(Settings(database_url=_postgres_url(name)).resolved_database_url)
        try:
            upgrade(db, revision)
        finally:
            db.dispose()
        _templates[key] = name
    return _templates[key]


_to_drop: list[str] = []
"""The PostgreSQL templates this process created, dropped when it ends."""


def _drop_templates() -> None:
    for (kind, _), where in _templates.items():
        if kind == "sqlite":
            shutil.rmtree(Path(where).parent, ignore_errors=True)
    for name in _to_drop:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _templates.clear()
    _to_drop.clear()


@pytest.fixture(scope="session")
def _sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with make_backend("sqlite", tmp_path_factory.mktemp("sqlite-data")) as backend:
        yield backend


@pytest.fixture(scope="session")
def _postgres_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with make_backend("postgres", tmp_path_factory.mktemp("pg-data")) as backend:
        yield backend


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"_{request.param}_backend")  # type: ignore[no-any-return]


@dataclass
class Account:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}


@contextlib.contextmanager
def traversable_tmpdir(prefix: str = "agent-sessions-") -> Iterator[Path]:
    """A temp dir every sandbox uid can traverse (pytest's tmp_path is 0700 on the way)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_account(db: Database, name: str = "test") -> Account:
    key = generate_key()
    with db.write() as s:
        account = accounts.create_account(s, name=name)
        accounts.add_key(
            s, account_id=account.id, prefix=display_prefix(key), key_hash=hash_key(key)
        )
    return Account(account.id, key)


@pytest.fixture
def alice(backend: Backend) -> Account:
    return make_account(backend.db, "alice")


@pytest.fixture
def bob(backend: Backend) -> Account:
    return make_account(backend.db, "bob")


class InertLifecycle(Lifecycle):
    """The lifecycle with its workers switched off, for tests of the HTTP layer alone.

    Nothing is provisioned, so sessions stay ``provisioning`` and the database changes only
    through the request under test (the access-matrix oracle depends on that). Lifecycle
    behaviour itself is tested with the real workflows in ``tests/lifecycle``.
    """

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    async def session_created(self, session_id: str) -> None:
        pass

    async def session_archived(self, session_id: str, version: int) -> None:
        pass

    async def session_deleted(self, *args: Any) -> None:
        pass

    async def ensure_active(self, session_id: str, timeout: float = 0.0) -> LifecycleView:  # noqa: ASYNC109
        """A live workspace route answers its 409 at once: nothing ever leaves provisioning."""
        return await super().ensure_active(session_id, timeout=0.0)


NO_ACCOUNT_LIMITS = {
    "account_max_live_sandboxes": 0,
    "account_max_turns": 0,
    "account_writes_per_minute": 0,
}
"""For tests of the HTTP layer: with ``InertLifecycle`` every session stays ``provisioning``,
a live sandbox for good, and schemathesis sends far more writes a minute than one team."""


def api_app(backend: Backend, **settings: Any) -> FastAPI:
    s = backend.settings(**{**NO_ACCOUNT_LIMITS, **settings})
    return create_app(s, db=backend.db, lifecycle=InertLifecycle(s, backend.db))


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    """The ASGI app over httpx (Starlette's TestClient is an ``httpx.Client``)."""
    with TestClient(api_app(backend), raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path


def start_server(data_dir: Path, database_url: str | None = None, **env: str) -> Server:
    """Start ``agent-sessions serve`` as a subprocess and wait until /healthz answers.

    The port is picked free, then bound by the server: another test process (pytest-xdist)
    may take it in between, so a bind failure is retried on another port."""
    for _ in range(5):
        server = _start_server_once(data_dir, database_url, **env)
        if server is not None:
            return server
    raise RuntimeError("serve found no free port in five tries")


def service_env(data_dir: Path, database_url: str | None = None, **env: str) -> dict[str, str]:
    """The environment of a ``serve`` or ``worker`` subprocess: this one's without its own
    ``AGENT_SESSIONS_*`` variables, then the data directory, the database and ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SESSIONS_")}
    full_env["AGENT_SESSIONS_DATA_DIR"] = str(data_dir)
    if database_url:
        full_env["AGENT_SESSIONS_DATABASE_URL"] = database_url
    full_env.update(env)
    return full_env


def _start_server_once(data_dir: Path, database_url: str | None, **env: str) -> Server | None:
    port = free_port()
    full_env = service_env(data_dir, database_url, **env)
    log = data_dir / f"serve-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CLI, "serve", "--port", str(port)], env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.wait()
            if "address already in use" in log.read_text():
                return None
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, proc, full_env, log)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"serve did not become healthy:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    """A real ``serve`` process on this test's backend."""
    srv = start_server(tmp_path / "serve-data", backend.url)
    yield srv
    stop_server(srv)


CONSOLE_SCREENSHOTS = (
    Path(
        os.environ.get("AGENT_SESSIONS_TEST_ARTIFACTS")
        or Path(tempfile.gettempdir()) / "agent-sessions-test-artifacts"
    )
    / "console-screenshots"
)
"""Where the console's browser tests save screenshots: ``$AGENT_SESSIONS_TEST_ARTIFACTS``
(for CI to keep) or the temporary directory, under ``console-screenshots``."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Under xdist this runs in the controller, which took none: it looks at the directory.
    if CONSOLE_SCREENSHOTS.is_dir() and any(CONSOLE_SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"console screenshots: {CONSOLE_SCREENSHOTS}")


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave at once with pytest's exit status. A DBOS instance destroyed mid-sleep can leave a
    non-daemon executor thread retrying against a test database already dropped; the
    interpreter would wait for it forever at exit (seen once in CI, after all tests passed)."""
    _dropper.finish()
    _drop_templates()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
