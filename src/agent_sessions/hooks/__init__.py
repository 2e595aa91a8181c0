"""Hooks in the Claude Code hook format (architecture.md, Agent turns).

``{"hooks": {"<Event>": [{"matcher": "<regex>", "hooks": [{"type": "command", "command": "…",
"timeout": 60}]}]}}``; the event JSON arrives on stdin; exit 0 proceeds, exit 2 blocks with stderr
as the reason. The operator's hooks (the file named by ``AGENT_SESSIONS_HOOKS_FILE``) run on the
host (:mod:`.runner`), lifecycle events (``SandboxProvisioned``, ``BeforeHibernate``,
``AfterRestore``) included; a repository's (its ``.claude/settings.json``) run inside the
session's sandbox, only when the operator allows them (:mod:`.repo`).
"""

from agent_sessions.hooks.runner import HookConfigError, HookOutcome, HookRunner

__all__ = ["HookConfigError", "HookOutcome", "HookRunner"]
