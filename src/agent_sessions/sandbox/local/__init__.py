"""The local provider: hardened bubblewrap sandboxes on this host.

Modules, one concern each: ``bwrap`` (the command line), ``seccomp`` (the filter), ``uids``
(a host uid per sandbox), ``runner`` (spawn, drain, cap, time out), ``output`` (head + tail
capture), ``processes`` (find and kill a sandbox's processes), ``cgroups`` (delegated cgroup v2
limits), ``workspace_fs`` and ``_openat2`` (host-side file access that never leaves the
workspace), ``provider`` (the :class:`~agent_sessions.sandbox.base.SandboxProvider`).
"""

from __future__ import annotations

from agent_sessions.sandbox.local.bwrap import Limits
from agent_sessions.sandbox.local.cgroups import CgroupSupport
from agent_sessions.sandbox.local.provider import CommandTooLong, LocalProvider, LocalSandbox

__all__ = ["CgroupSupport", "CommandTooLong", "Limits", "LocalProvider", "LocalSandbox"]
