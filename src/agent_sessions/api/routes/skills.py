"""``/api/sessions/{sessionId}/skills``: the skills the agent can load, and the global refs."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from sqlalchemy.orm import Session

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.responses import errors
from agent_sessions.lifecycle.context import current
from agent_sessions.lifecycle.live import live_sandbox, owned
from agent_sessions.store import lifecycle as cas
from agent_sessions.store import sessions
from agent_sessions.store.lifecycle import LifecycleView
from agent_sessions.store.models import utcnow
from agent_sessions.workspace import skill_install
from agent_sessions.workspace.skills import SkillProblem, check_refs, discover, uninstalled

router = APIRouter(prefix="/api/sessions/{sessionId}/skills", tags=["skills"])
log = logging.getLogger(__name__)


def _errors(problems: list[SkillProblem]) -> list[schemas.SkillError]:
    return [schemas.SkillError(path=p.path, error=p.error) for p in problems]


@router.get(
    "",
    response_model=schemas.Skills,
    summary="Skills found in the workspace and installed from globalSkillRefs (live: a "
    "hibernated sandbox is restored first)",
    responses=errors(401, 403, 404, 409, 502, 504),
)
async def list_skills(caller: CallerDep, sessionId: str) -> schemas.Skills:
    services, account_id = caller
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    found = await discover(sandbox)
    refs = await services.db.read_call(lambda s: skill_install.stored_refs(s, sessionId))
    return schemas.Skills(
        skills=[
            schemas.SkillInfo(
                name=s.name,
                description=s.description,
                source=s.source,
                path=s.path,
                model_invocable=s.model_invocable,
            )
            for s in found.skills
        ],
        errors=_errors(found.errors + uninstalled(refs, found)),
        global_skill_refs=refs,
    )


@router.put(
    "",
    response_model=schemas.SkillsUpdated,
    summary="Replace globalSkillRefs; installed now when the sandbox is active, else at its "
    "next restore",
    responses=errors(400, 401, 403, 404, 413),
)
async def put_skills(
    caller: CallerDep, sessionId: str, body: schemas.SkillsUpdate
) -> schemas.SkillsUpdated:
    services, account_id = caller
    await owned(services.db, account_id, sessionId)
    refs = check_refs(services.settings, body.skill_refs())

    def store(db: Session) -> LifecycleView | None:
        row = sessions.get_owned(db, sessionId, account_id, for_update=True)
        row.global_skill_refs, row.updated_at = refs, utcnow()
        return cas.view(db, sessionId)

    view = await services.db.write_call(store)
    installed, problems = False, []
    if view is not None and view.lifecycle_state == "active" and view.sandbox_state:
        try:
            sandbox = await current().provider(view.sandbox_type).connect(view.sandbox_state)
            problems = await skill_install.install(sandbox, services.settings, refs)
            installed = True
        except Exception as err:  # hibernated meanwhile: the next restore installs them
            log.warning("installing skills of %s now failed: %s", sessionId, err)
    return schemas.SkillsUpdated(
        global_skill_refs=refs, installed=installed, errors=_errors(problems)
    )
