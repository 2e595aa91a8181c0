"""Sandbox lifecycle: provisioning, hibernation, restore, archive (DESIGN §4).

The API calls :class:`Lifecycle` after its transactions commit; the work runs in the durable
DBOS workflows of :mod:`.workflows`. Only this package (and the agent's workflows) import DBOS.
"""

from agent_sessions.lifecycle.service import Lifecycle

__all__ = ["Lifecycle"]
