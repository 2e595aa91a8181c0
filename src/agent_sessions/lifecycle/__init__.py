"""Sandbox lifecycle: provisioning, hibernation, restore, archive (DESIGN §4).

The API tells this layer about every session event that needs sandbox work *after* the
database transaction that recorded it has committed. Until the durable lifecycle workflows land
(issue 4), :class:`LifecycleEvents` is that single seam: the API calls it, and provisioning,
stopping and cleanup will start from these methods.
"""

from agent_sessions.lifecycle.events import LifecycleEvents

__all__ = ["LifecycleEvents"]
