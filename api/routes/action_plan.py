from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbSession, KeysDep, SessionClient, SessionMember
from companion.sessions import content
from companion.sessions.schemas import (
    ActionCreate,
    ActionPlanView,
    ActionUpdate,
    ActionView,
    ProgressCreate,
)

router = APIRouter(
    prefix="/groups/{group_id}/sessions/{session_id}/action-plan", tags=["action-plan"]
)


@router.get("")
def get_action_plan(ctx: SessionMember, db: DbSession, keys: KeysDep) -> ActionPlanView:
    return content.action_plan(db, keys, ctx.session)


@router.post("/actions", status_code=201)
def add_action(spec: ActionCreate, ctx: SessionClient, db: DbSession, keys: KeysDep) -> ActionView:
    """The client adds an action (from the synthesis phase on)."""
    action = content.add_action(db, keys, ctx.user, ctx.session, spec)
    return content.action_view(db, keys, ctx.session, action)


@router.patch("/actions/{action_id}")
def update_action(
    action_id: str, spec: ActionUpdate, ctx: SessionClient, db: DbSession, keys: KeysDep
) -> ActionView:
    """Status and wording stay editable after the session closes: that is the follow-up."""
    action = content.get_action(db, ctx.session, action_id)
    content.update_action(db, keys, actor=ctx.user, session=ctx.session, action=action, spec=spec)
    return content.action_view(db, keys, ctx.session, action)


@router.post("/actions/{action_id}/progress", status_code=201)
def add_progress(
    action_id: str, spec: ProgressCreate, ctx: SessionClient, db: DbSession, keys: KeysDep
) -> ActionView:
    """A dated progress note on an action."""
    action = content.get_action(db, ctx.session, action_id)
    content.add_progress(db, keys, actor=ctx.user, session=ctx.session, action=action, spec=spec)
    return content.action_view(db, keys, ctx.session, action)
