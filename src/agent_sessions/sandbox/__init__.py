"""Sandboxes: where agent commands run. The index of the package.

``base`` is the provider interface, ``fake`` an unisolated provider for unit tests of the layers
above, ``local`` the hardened bubblewrap provider (single host), ``vercel`` Vercel's microVMs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_sessions.sandbox.base import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_READ,
    DEFAULT_TIMEOUT,
    READ_CHUNK,
    ExecResult,
    FileInfo,
    FileKind,
    OutputListener,
    Sandbox,
    SandboxProvider,
    SandboxStatus,
    SnapshotInfo,
    validate_name,
)
from agent_sessions.sandbox.errors import (
    FileTooLarge,
    InvalidRange,
    InvalidSandboxName,
    PathConflict,
    PathNotFound,
    SandboxAuthError,
    SandboxElsewhere,
    SandboxError,
    SandboxNotFound,
    SandboxRejected,
    SandboxSetupError,
    SandboxUnavailable,
    UnsafePath,
)

if TYPE_CHECKING:
    from agent_sessions.settings import Settings

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MAX_READ",
    "DEFAULT_TIMEOUT",
    "READ_CHUNK",
    "ExecResult",
    "FileInfo",
    "FileKind",
    "FileTooLarge",
    "InvalidRange",
    "InvalidSandboxName",
    "OutputListener",
    "PathConflict",
    "PathNotFound",
    "Sandbox",
    "SandboxAuthError",
    "SandboxElsewhere",
    "SandboxError",
    "SandboxNotFound",
    "SandboxProvider",
    "SandboxRejected",
    "SandboxSetupError",
    "SandboxStatus",
    "SandboxUnavailable",
    "SnapshotInfo",
    "UnsafePath",
    "provider_from_settings",
    "validate_name",
]


def provider_from_settings(settings: Settings, kind: str | None = None) -> SandboxProvider:
    """The provider named by ``kind`` (default ``settings.sandbox_provider``).

    Imports lazily: the Vercel SDK and the seccomp bindings load only when used.
    """
    kind = kind or settings.sandbox_provider
    if kind == "local":
        from agent_sessions.sandbox.local import LocalProvider
        from agent_sessions.snapshots import store_from_settings

        return LocalProvider(settings, store_from_settings(settings))
    if kind == "vercel":
        from agent_sessions.sandbox.vercel import VercelProvider

        return VercelProvider(settings)
    raise SandboxSetupError(f"unknown sandbox provider {kind!r}: use 'local' or 'vercel'")
