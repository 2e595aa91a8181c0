"""Operator hooks in the Claude Code hook format (DESIGN §6).

``{"hooks": {"<Event>": [{"matcher": "<regex>", "hooks": [{"type": "command", "command": "…",
"timeout": 60}]}]}}``; the event JSON arrives on stdin; exit 0 proceeds, exit 2 blocks with stderr
as the reason. Lifecycle events (``SandboxProvisioned``, ``BeforeHibernate``, ``AfterRestore``)
run on the host from the file named by ``AGENT_SESSIONS_HOOKS_FILE``.
"""

from agent_sessions.hooks.runner import HookConfigError, HookOutcome, HookRunner

__all__ = ["HookConfigError", "HookOutcome", "HookRunner"]
