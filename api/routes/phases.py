from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api.deps import AssistDep, DbSession, KeysDep, SessionFacilitator, SessionMember
from api.responses import conflict
from companion.assist.ideas import service as ideas
from companion.method.phases import Phase
from companion.sessions import service
from companion.sessions.schemas import PhaseView, SessionView

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/phases", tags=["phases"])


@router.get("")
def list_phases(ctx: SessionMember, db: DbSession, keys: KeysDep) -> list[PhaseView]:
    return service.view(db, keys, ctx.group, ctx.session).phases


@router.post("/{phase}/start", responses=conflict("Not allowed now."))
def start_phase(phase: Phase, ctx: SessionFacilitator, db: DbSession, keys: KeysDep) -> SessionView:
    """Phases run strictly in order; a 409 says what is allowed now."""
    session = service.move(db, ctx.user, ctx.group, ctx.session.id, phase, start=True)
    return service.view(db, keys, ctx.group, session)


@router.post("/{phase}/end", responses=conflict("Not allowed now."))
def end_phase(
    phase: Phase,
    ctx: SessionFacilitator,
    db: DbSession,
    keys: KeysDep,
    *,
    assist: AssistDep,
    background: BackgroundTasks,
) -> SessionView:
    """Ending the last phase closes the session, which becomes read-only. Ending phase 4
    gets the draft synthesis finished at once (a run made before the last ideas is redone)."""
    session = service.move(db, ctx.user, ctx.group, ctx.session.id, phase, start=False)
    if phase is Phase.consultation:  # the themes waited for the end (ideas.remember_themes)
        ideas.consultation_ended(db, session)
    background.add_task(assist.phase_ended, session.id, phase)
    return service.view(db, keys, ctx.group, session)
