"""Sandbox lifecycle: provisioning, hibernation, restore, archive (docs/architecture.md).

The API calls :class:`Lifecycle` after its transactions commit; the work runs in the durable
DBOS workflows of :mod:`.workflows`. ``live`` is the session's running sandbox for an API call
(restored if hibernated). Which modules import DBOS: docs/architecture.md, "Layers".
"""

from agent_sessions.lifecycle.service import Lifecycle

__all__ = ["Lifecycle"]
