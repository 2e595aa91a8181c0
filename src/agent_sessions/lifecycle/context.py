"""What the lifecycle workflows need at run time, set once per process before DBOS launches.

Workflows are recovered by DBOS from their id and arguments alone, so they cannot receive live
objects; they find the database, settings, hooks and providers here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_sessions.hooks import HookRunner
from agent_sessions.sandbox import SandboxProvider, provider_from_settings
from agent_sessions.settings import Settings
from agent_sessions.store import Database
from agent_sessions.workspace.credentials import Vault


@dataclass
class LifecycleContext:
    settings: Settings
    db: Database
    hooks: HookRunner
    providers: dict[str, SandboxProvider] = field(default_factory=dict)
    """Providers by kind, created on first use (tests may pre-fill this)."""
    _vault: Vault | None = field(default=None, repr=False)

    @property
    def vault(self) -> Vault:
        """Opens the forge tokens a clone needs (built on first use)."""
        if self._vault is None:
            self._vault = Vault(self.settings)
        return self._vault

    def provider(self, kind: str) -> SandboxProvider:
        if kind not in self.providers:
            self.providers[kind] = provider_from_settings(self.settings, kind)
        return self.providers[kind]


_current: LifecycleContext | None = None


def set_context(ctx: LifecycleContext | None) -> None:
    global _current
    _current = ctx


def current() -> LifecycleContext:
    if _current is None:
        raise RuntimeError("lifecycle context not set: call lifecycle.runtime.start() first")
    return _current
