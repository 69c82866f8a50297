from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request

from api.deps import KeysDep, SessionDep, SessionMember, SessionParticipant
from companion.method.phases import Phase
from companion.sessions import content
from companion.sessions.views import NoteCreate, NoteView

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/notes", tags=["notes"])


@router.get("")
def list_notes(
    ctx: SessionMember, db: SessionDep, keys: KeysDep, phase: Phase | None = None
) -> list[NoteView]:
    return content.notes(db, keys, ctx.session, phase)


@router.post("", status_code=201)
def add_note(
    spec: NoteCreate,
    ctx: SessionParticipant,
    db: SessionDep,
    keys: KeysDep,
    request: Request,
    background: BackgroundTasks,
) -> NoteView:
    """A typed note for the phase that is running, attributed to its author."""
    note = content.add_note(db, keys, ctx.user, ctx.session, spec.body)
    if note.phase == Phase.consultation:  # after the commit: its ideas are grouped at once
        background.add_task(request.app.state.assist.poke, ctx.session.id)
    elif note.phase == Phase.clarification:  # its questions no cue decides go to the model
        background.add_task(request.app.state.assist.poke_clarity, ctx.session.id)
    return next(n for n in content.notes(db, keys, ctx.session) if n.id == note.id)
