from __future__ import annotations

from fastapi import APIRouter

from api.deps import (
    DbSession,
    GatewayDep,
    KeysDep,
    SessionFacilitator,
    SessionMember,
    SessionParticipant,
)
from api.responses import MODEL_CALL, conflict
from companion.assist import debrief, regulation
from companion.method.phases import Language
from companion.sessions import content
from companion.sessions import service as sessions

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/learnings", tags=["learnings"])


@router.get("/questions")
def debrief_questions(ctx: SessionParticipant, db: DbSession) -> debrief.DebriefQuestions:
    """The phase 6 questions for the caller's role, and the questions on the process."""
    role = sessions.participants(db, ctx.session)[ctx.user.id]
    return debrief.questions(Language(ctx.group.language), role)


@router.get("/regulation")
def get_regulation(ctx: SessionMember, db: DbSession, keys: KeysDep) -> debrief.Regulation:
    """The session's evaluation: ratings, phases over their timebox, who has not answered, and
    the regulation points for the next session once made (`summary`, else null)."""
    view = sessions.view(db, keys, ctx.group, ctx.session)
    found = content.learnings(db, keys, ctx.session)
    summary = regulation.summary_view(db, keys, ctx.session, found)
    return debrief.regulation(view, found, summary)


@router.post(
    "/regulation/summary",
    responses={
        **conflict("Phase 6 has not started, or no learning is recorded yet."),
        **MODEL_CALL,
    },
)
def summarise_regulation(
    ctx: SessionFacilitator, db: DbSession, keys: KeysDep, gateway: GatewayDep
) -> regulation.SummaryMade:
    """For the facilitator: 1-5 regulation points ("keep" or "change", one sentence each)
    drawn from the participants' learnings, each citing the learnings it comes from. Replaces
    the stored points."""
    return regulation.summarise(
        db, keys, gateway=gateway, actor=ctx.user, group=ctx.group, session=ctx.session
    )


@router.put("/regulation/summary")
def edit_regulation(
    spec: regulation.PointsSet, ctx: SessionFacilitator, db: DbSession, keys: KeysDep
) -> regulation.RegulationSummaryView:
    """The facilitator rewrites the regulation points; they are then marked edited."""
    return regulation.edit(db, keys, ctx.user, ctx.session, spec)
