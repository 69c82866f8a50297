from __future__ import annotations

from fastapi import APIRouter

from api.deps import KeysDep, SessionDep, SessionMember, SessionParticipant
from companion.assist import debrief
from companion.method.phases import Language
from companion.sessions import content
from companion.sessions import service as sessions

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/learnings", tags=["learnings"])


@router.get("/questions")
def debrief_questions(ctx: SessionParticipant, db: SessionDep) -> debrief.DebriefQuestions:
    """The phase 6 questions for the caller's role, and the questions on the process."""
    role = sessions.participants(db, ctx.session)[ctx.user.id]
    return debrief.questions(Language(ctx.group.language), role)


@router.get("/regulation")
def regulation(ctx: SessionMember, db: SessionDep, keys: KeysDep) -> debrief.Regulation:
    """The session's evaluation: ratings, phases over their timebox, who has not answered."""
    view = sessions.view(db, keys, ctx.group, ctx.session)
    return debrief.regulation(view, content.learnings(db, keys, ctx.session))
