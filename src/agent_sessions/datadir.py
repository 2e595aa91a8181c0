"""The data directory belongs to the service's user (issue: "readable by every local user").

What the service writes there — databases, snapshots, its own bookkeeping — is 0600 (files) and
0700 (directories). One exception is forced by the local sandbox: each sandbox runs as its own
host uid, and bwrap, already running as that uid, must walk from ``/`` to the workspace it
binds. So the data directory, ``sandboxes/`` and each sandbox's directory are 0711 (anyone may
pass through, nobody else may list), and the sandboxes' shared ``/etc`` files stay readable.

Files are created private (:func:`private`, an ``opener`` for :func:`open`) rather than made so
by a process-wide umask: the umask would be inherited by every sandboxed command too, and the
agent's files would come out 0600 inside its own workspace. SQLite creates its ``-wal`` and
``-shm`` files with the database file's mode, so a private database file is enough there.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from agent_sessions.settings import Settings

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "TRAVERSE_ONLY", "prepare", "private"]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
TRAVERSE_ONLY = 0o711
SANDBOXES = "sandboxes"
"""The local provider's directory (it keeps the modes beneath it: workspaces are the sandboxes')."""
SNAPSHOTS = "snapshots"


def private(path: str | os.PathLike[str], flags: int) -> int:
    """``open(path, "xb", opener=private)``: the file is created 0600 whatever the umask."""
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)


def prepare(settings: Settings) -> None:
    """Create the data directory, and tighten what an earlier version left readable: the
    database files, the snapshot directory and the sandbox bookkeeping files."""
    root = settings.data_dir
    root.mkdir(parents=True, exist_ok=True)
    # Local sandboxes' uids pass through it to their workspaces; nobody else needs to.
    _chmod(root, TRAVERSE_ONLY if settings.sandbox_provider == "local" else PRIVATE_DIR)
    for database in _sqlite_files(settings):
        if not database.exists():  # created empty and private; SQLite's -wal/-shm follow it
            with open(database, "xb", opener=private):
                pass
    for entry in root.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _chmod(entry, PRIVATE_FILE)
    for database in _sqlite_files(settings):
        for path in (database, *database.parent.glob(f"{database.name}-*")):
            _chmod(path, PRIVATE_FILE)
    snapshots = root / SNAPSHOTS
    if snapshots.is_dir() and not snapshots.is_symlink():
        _tighten_tree(snapshots)
    sandboxes = root / SANDBOXES
    if sandboxes.is_dir() and not sandboxes.is_symlink():
        for entry in sandboxes.iterdir():
            if entry.is_file() and not entry.is_symlink():
                _chmod(entry, PRIVATE_FILE)


def _sqlite_files(settings: Settings) -> list[Path]:
    paths = [settings.data_dir / "dbos.sqlite"]  # DBOS's system database (lifecycle/runtime)
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        paths.append(Path(url.removeprefix("sqlite:///")))
    return paths


def _tighten_tree(top: Path) -> None:
    _chmod(top, PRIVATE_DIR)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            _chmod(Path(dirpath, name), PRIVATE_DIR)
        for name in filenames:
            _chmod(Path(dirpath, name), PRIVATE_FILE)


def _chmod(path: Path, mode: int) -> None:
    """Set ``mode`` on ``path`` itself (never through a symlink); a file another process
    removed meanwhile is fine."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(os.lstat(path).st_mode) != mode and not path.is_symlink():
            os.chmod(path, mode)
