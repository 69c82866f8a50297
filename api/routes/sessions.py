from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbSession, GroupFacilitator, GroupMember, KeysDep, SessionMember
from companion.sessions import service
from companion.sessions.schemas import SessionCreate, SessionView

router = APIRouter(prefix="/groups/{group_id}/sessions", tags=["sessions"])


@router.post("", status_code=201)
def create_session(
    spec: SessionCreate, ctx: GroupFacilitator, db: DbSession, keys: KeysDep
) -> SessionView:
    """Plan a session in the open cycle; the caller is its facilitator."""
    session = service.create_session(db, keys, ctx.user, ctx.group, spec)
    return service.view(db, keys, ctx.group, session)


@router.get("")
def list_sessions(ctx: GroupMember, db: DbSession, keys: KeysDep) -> list[SessionView]:
    return [service.view(db, keys, ctx.group, s) for s in service.sessions_of(db, ctx.group)]


@router.get("/{session_id}")
def get_session(ctx: SessionMember, db: DbSession, keys: KeysDep) -> SessionView:
    """The session with its phases, elapsed time against timeboxes and the frame reminder."""
    return service.view(db, keys, ctx.group, ctx.session)
