from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbSession, KeysDep, SessionMember, SessionParticipant
from companion.sessions import content
from companion.sessions.schemas import LearningSet, LearningsView

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/learnings", tags=["learnings"])


@router.get("")
def list_learnings(ctx: SessionMember, db: DbSession, keys: KeysDep) -> LearningsView:
    return content.learnings(db, keys, ctx.session)


@router.put("")
def set_learning(
    spec: LearningSet, ctx: SessionParticipant, db: DbSession, keys: KeysDep
) -> LearningsView:
    """Each participant records what they learned and rates the session (phase 6)."""
    content.set_learning(db, keys, ctx.user, ctx.session, spec)
    return content.learnings(db, keys, ctx.session)
