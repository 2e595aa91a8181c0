"""The seam between the API and the lifecycle workflows."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class LifecycleEvents:
    """Session events that need sandbox work, delivered after their transaction commits.

    Provisioning is not implemented yet: a new session stays ``provisioning`` until the
    lifecycle workflows (issue 4) start from :meth:`session_created`.
    """

    def session_created(self, session_id: str) -> None:
        log.debug("session %s created; provisioning starts here (lifecycle issue)", session_id)

    def session_archived(self, session_id: str) -> None:
        log.debug("session %s archived; its sandbox is stopped here (lifecycle issue)", session_id)

    def session_deleted(self, session_id: str) -> None:
        log.debug("session %s deleted; sandbox and snapshots are removed here", session_id)
