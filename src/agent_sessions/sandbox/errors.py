"""Errors raised by sandbox providers.

Each one also derives from the generic class of :mod:`agent_sessions.exceptions` that says how
the API answers it (404, 400, 409, 502/504), so ``api/`` never needs to know about sandboxes.
"""

from __future__ import annotations

from agent_sessions.exceptions import (
    AgentSessionsError,
    Conflict,
    InvalidInput,
    NotFound,
    TooLarge,
    UpstreamError,
)

__all__ = [
    "FileTooLarge",
    "InvalidRange",
    "InvalidSandboxName",
    "PathConflict",
    "PathNotFound",
    "SandboxAuthError",
    "SandboxElsewhere",
    "SandboxError",
    "SandboxNotFound",
    "SandboxRejected",
    "SandboxSetupError",
    "SandboxUnavailable",
    "UnsafePath",
    "WorkspaceFull",
]


class SandboxError(AgentSessionsError):
    """Base of every error a sandbox provider raises on purpose."""


class SandboxNotFound(SandboxError, NotFound):
    """No sandbox with that name/state exists (destroyed, or never created)."""


class SandboxElsewhere(SandboxError, UpstreamError):
    """The local sandbox lives on another host (process) than this one: the work belongs there
    (docs/architecture.md, Scale-out)."""

    def __init__(self, name: str, host: str) -> None:
        super().__init__(f"sandbox {name!r} lives on host {host!r}, not on this one")
        self.host = host


class PathNotFound(SandboxError, NotFound):
    """The workspace path does not exist."""


class PathConflict(SandboxError, Conflict):
    """The workspace path exists but has the wrong kind (a directory where a file is wanted)."""


class WorkspaceFull(SandboxError, Conflict):
    """The workspace is at its disk limit (``AGENT_SESSIONS_SANDBOX_DISK_BYTES``): files must
    go before more can be written."""


class UnsafePath(SandboxError, InvalidInput):
    """The path is absolute, climbs out with ``..``, holds NUL, is too long, or crosses a link.

    Host-side file access never follows symlinks: a link the sandbox planted could otherwise
    point the service at host files or another sandbox's workspace (architecture.md, Local sandbox).
    """


class FileTooLarge(SandboxError, TooLarge):
    """The file is bigger than the caller's limit (a whole-file read holds it all in memory).

    ``size`` is the size seen before reading, or None when the file grew past the limit while
    it was being read.
    """

    def __init__(self, path: str, limit: int, size: int | None = None) -> None:
        what = f"{size} bytes" if size is not None else "it grew while being read"
        super().__init__(f"{path} is larger than {limit} bytes ({what})")
        self.path, self.limit, self.size = path, limit, size


class InvalidRange(SandboxError, InvalidInput):
    """A byte range with a negative offset or length."""


class InvalidSandboxName(SandboxError, InvalidInput):
    """Sandbox names are ``^[A-Za-z0-9_-]{1,64}$``: they become host directory names."""


class SandboxUnavailable(SandboxError, UpstreamError):
    """The provider cannot run the sandbox right now (spawn failure, provider down, stopped)."""


class SandboxAuthError(SandboxError, UpstreamError):
    """The provider refused our credentials (401/403), or none are configured: an operator has
    to fix the configuration, so nothing retries it."""


class SandboxRejected(SandboxError, UpstreamError):
    """The provider refused a request for a reason retrying cannot change (a 4xx other than
    the ones mapped to a more precise error)."""


class SandboxSetupError(SandboxError):
    """The host cannot run sandboxes as configured; raised at start-up, with the fix named."""
