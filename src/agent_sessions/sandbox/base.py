"""The provider interface every sandbox backend implements.

A *sandbox* is a plain execution environment with a workspace: the agent loop lives in our
process and reaches in only through these calls (docs/architecture.md). Paths are always relative
to the workspace root; providers refuse absolute paths, ``..`` and NUL with
:class:`~agent_sessions.sandbox.errors.UnsafePath`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent_sessions.sandbox.errors import InvalidRange, InvalidSandboxName
from agent_sessions.snapshots.base import SnapshotInfo

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MAX_READ",
    "DEFAULT_TIMEOUT",
    "READ_CHUNK",
    "ExecResult",
    "FileInfo",
    "FileKind",
    "OutputListener",
    "Sandbox",
    "SandboxProvider",
    "SandboxStatus",
    "SnapshotInfo",
    "check_range",
    "validate_name",
]

DEFAULT_TIMEOUT = 120.0
"""Seconds an :meth:`Sandbox.exec` may run before the whole process tree is killed."""
DEFAULT_MAX_OUTPUT = 50_000
"""Characters kept of each of stdout and stderr (head and tail; the middle is dropped)."""
DEFAULT_MAX_READ = 16 << 20
"""Bytes :meth:`Sandbox.read_file` returns at most unless the caller asks for another limit."""
READ_CHUNK = 1 << 20
"""Most bytes one chunk of :meth:`Sandbox.read_stream` holds."""

FileKind = Literal["file", "dir", "symlink", "other"]
OutputListener = Callable[[Literal["stdout", "stderr"], bytes], None]
"""Told each piece of a running command's output as it arrives (``"stdout"`` or ``"stderr"``,
the raw bytes, possibly ending inside a character); called on the event loop, so it must not
block."""
SandboxStatus = Literal["running", "stopped", "missing"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid sandbox name, else raise :class:`InvalidSandboxName`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidSandboxName(f"invalid sandbox name {name!r}: use 1-64 of [A-Za-z0-9_-]")
    return name


def check_range(offset: int, length: int | None) -> None:
    """Refuse a negative offset or length of :meth:`Sandbox.read_stream`."""
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRange(f"invalid byte range: offset {offset}, length {length}")


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command."""

    exit_code: int
    """The command's exit status; ``128 + n`` when killed by signal ``n``, -1 if unknown."""
    stdout: str
    stderr: str
    truncated: bool
    """True when stdout or stderr lost its middle to the output cap."""
    timed_out: bool
    """True when the host killed the command at its wall-clock timeout."""
    command_id: str | None = None
    """Set for detached commands (they keep running until :meth:`Sandbox.stop`)."""


@dataclass(frozen=True)
class FileInfo:
    """One workspace entry, as ``lstat`` sees it (links are reported, never followed)."""

    path: str
    """Workspace-relative, ``/``-separated."""
    kind: FileKind
    size: int
    mode: int
    """Permission bits only (``0o755``), no file-type bits."""
    mtime: float


class Sandbox(ABC):
    """One named sandbox: a workspace plus the processes running against it."""

    name: str

    @property
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-able state that lets :meth:`SandboxProvider.connect` find this sandbox again.

        Stored in the database as ``sandboxState``: it must hold no secrets and no host paths.
        """

    @abstractmethod
    async def exec(
        self,
        command: str,
        *,
        cwd: str = ".",
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the host enforces it, see exec)
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
        on_output: OutputListener | None = None,
    ) -> ExecResult:
        """Run ``command`` with ``bash -c`` in ``cwd``.

        Background jobs (``cmd &``) end with the command. ``detached`` starts the command and
        returns at once with ``command_id`` set; the process lives until :meth:`stop` (its
        output is discarded: redirect it to a file to keep it). A timed-out command is killed
        with everything it started and comes back with ``timed_out`` set, not as an exception.
        ``on_output`` sees the output as it comes (all of it, before the cap): a long command's
        progress can be shown while it runs.
        """

    @abstractmethod
    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_READ) -> bytes:
        """Whole content of a regular file of at most ``max_bytes`` bytes.

        A bigger file raises :class:`~agent_sessions.sandbox.errors.FileTooLarge`, checked
        before reading and again while reading (the sandbox may be growing the file): a whole
        file sits in the service's memory, so a caller that can hold less names its limit.
        """

    @abstractmethod
    def read_stream(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """A regular file's bytes from ``offset``, at most ``length`` of them, in chunks of at
        most :data:`READ_CHUNK` bytes: for files of any size, one chunk in memory at a time.

        Errors (missing, not a regular file, unsafe path) come with the first chunk. A caller
        that stops early closes the generator (``contextlib.aclosing``) to free what it holds.
        """

    @abstractmethod
    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Create or replace a regular file, creating missing parent directories."""

    @abstractmethod
    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        """Entries of a directory (not recursive), sorted by name."""

    @abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Information about one entry; a symlink is reported as ``symlink``."""

    @abstractmethod
    async def remove(self, path: str) -> None:
        """Remove a file, link or directory tree."""

    @abstractmethod
    async def snapshot(self) -> SnapshotInfo:
        """Save the whole workspace; the sandbox keeps running."""

    @abstractmethod
    async def restore(self, snapshot_url: str) -> None:
        """Replace the workspace with a snapshot's content (atomically)."""

    @abstractmethod
    async def freeze(self) -> None:
        """Pause every process of the sandbox, so the workspace holds still for a snapshot.

        Only :meth:`stop` or :meth:`destroy` follow (nothing thaws a frozen sandbox): the
        lifecycle freezes just before the snapshot that precedes removing the sandbox. Best
        effort: a provider that cannot pause processes does nothing, and the caller copes with a
        snapshot that fails all the same (it stops the sandbox and tries once more).
        """

    @abstractmethod
    async def stop(self) -> None:
        """Kill everything running in the sandbox; the workspace stays."""

    @abstractmethod
    async def destroy(self) -> None:
        """Stop and delete the workspace. Idempotent."""

    @abstractmethod
    async def status(self) -> SandboxStatus:
        """``running`` (processes alive), ``stopped`` (workspace only) or ``missing``."""


class SandboxProvider(ABC):
    """Creates sandboxes and reconnects to them from their persisted state."""

    kind: str
    """``local``, ``vercel``, ``fake``: the value stored beside ``sandboxState``."""

    @abstractmethod
    async def create(self, name: str) -> Sandbox:
        """Create (or reuse, if it exists) the sandbox called ``name``."""

    @abstractmethod
    async def connect(self, state: Mapping[str, Any]) -> Sandbox:
        """The sandbox described by ``state``; :class:`SandboxNotFound` if it is gone."""

    def capabilities(self) -> dict[str, Any]:
        """What isolation and limits this provider actually enforces on this host.

        Operators read it (health endpoint, start-up log) to see what is *not* in force, e.g. a
        local provider on a host that delegates no cgroup.
        """
        return {"kind": self.kind}
