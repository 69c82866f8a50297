"""The consultation's ideas grouped into themes, for everyone in the session."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import EmbedDep, KeysDep, SessionDep, SessionMember
from companion.ideas import service
from companion.ideas.views import IdeasView
from companion.method.phases import Language

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])


@router.get(
    "/ideas",
    responses={
        409: {"description": "The consultation (phase 4) has not started."},
        503: {"description": "The embedding model cannot be used right now."},
    },
)
def ideas(ctx: SessionMember, db: SessionDep, keys: KeysDep, embed: EmbedDep) -> IdeasView:
    """The consultants' ideas of phase 4, each exactly as said and linked to its note or
    transcript segment, grouped into themes that keep their ids as ideas arrive; near-duplicates
    are marked. Brought up to date on each call (and in the background while phase 4 runs)."""
    service.require_consultation(ctx.session)
    with service.session_lock(ctx.session.id):
        service.refresh(db, keys, ctx.session, Language(ctx.group.language), embed)
        db.commit()  # inside the lock: the background runner reads what this call added
    return service.view(db, keys, ctx.session)
