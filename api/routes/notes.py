from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api.deps import AssistDep, DbSession, KeysDep, SessionMember, SessionParticipant
from companion.method.phases import Phase
from companion.sessions import content
from companion.sessions.schemas import NoteCreate, NoteView

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/notes", tags=["notes"])


@router.get("")
def list_notes(
    ctx: SessionMember, db: DbSession, keys: KeysDep, phase: Phase | None = None
) -> list[NoteView]:
    return content.notes(db, keys, ctx.session, phase)


@router.post("", status_code=201)
def add_note(
    spec: NoteCreate,
    ctx: SessionParticipant,
    db: DbSession,
    keys: KeysDep,
    *,
    assist: AssistDep,
    background: BackgroundTasks,
) -> NoteView:
    """A typed note for the phase that is running, attributed to its author."""
    note = content.add_note(db, keys, ctx.user, ctx.session, spec.body)
    view = content.note_view(db, keys, ctx.session, note)
    # After the commit: ideas are grouped, or questions reviewed, at once.
    background.add_task(assist.changed, ctx.session.id, view.phase)
    return view
