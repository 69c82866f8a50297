"""The draft runs under way in this process: one per session at a time, how far the model has
written (the stream shows it), and giving up a run that newer ideas have overtaken when phase 4
ends (the draft covering every idea then starts at once rather than after it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.llm.errors import ModelError
from companion.llm.gateway import Progress
from companion.locks import SessionLocks
from companion.method.phases import Phase
from companion.store.models import Note, TranscriptSegment, utcnow

# One model run per session at a time: the runner and requests share it.
compose_lock = SessionLocks()

_written: dict[str, int] = {}  # session id -> chunks the model has streamed in the run under way
_started: dict[str, datetime] = {}  # session id -> when the run under way started
_abandon: set[str] = set()  # runs under way to give up at their next chunk


class DraftSuperseded(ModelError):
    """A draft run given up: phase 4 has ended and ideas came after the run started, so a
    new run is wanted at once rather than after this one."""

    kind = "superseded"
    cancelled = True


@contextmanager
def under_way(session_id: str) -> Iterator[Progress]:
    """Marks a run of the session as under way; yields the progress the model's stream calls,
    which counts its chunks and raises DraftSuperseded once the run is given up."""
    _written[session_id] = 0
    _started[session_id] = utcnow()

    def progress(chunks: int) -> None:
        _written[session_id] = chunks
        if session_id in _abandon:
            raise DraftSuperseded("Newer ideas came before the end of phase 4: drafting again.")

    try:
        yield progress
    finally:
        _written.pop(session_id, None)
        _started.pop(session_id, None)
        _abandon.discard(session_id)


def writing(session_id: str) -> int | None:
    """How far the model run under way for this session has got (in streamed chunks, about
    one token each); None when no run is under way in this process."""
    return _written.get(session_id)


def newest_text(db: Session, session_id: str) -> datetime | None:
    """When the latest phase-4 note or transcript segment of the session was stored."""
    note = db.scalar(
        select(func.max(Note.created_at)).where(
            Note.session_id == session_id, Note.phase == Phase.consultation
        )
    )
    segment = db.scalar(
        select(func.max(TranscriptSegment.created_at)).where(
            TranscriptSegment.session_id == session_id,
            TranscriptSegment.phase == Phase.consultation,
        )
    )
    return max((t for t in (note, segment) if t is not None), default=None)


def abandon_if_stale(session_id: str, newest: datetime | None) -> bool:
    """Give up the run under way for this session if it started before `newest` (the latest
    phase-4 text); whether one was given up."""
    started = _started.get(session_id)
    if started is None or newest is None or newest <= started:
        return False
    _abandon.add(session_id)
    return True
