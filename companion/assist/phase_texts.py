"""What was said in one phase of a session: its typed notes and transcript segments, opened.

Every assistance feature reads a phase this way; each then keeps what it needs (the clarity
view every text, the ideas the consultants' only).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session

from companion.method.phases import Phase
from companion.sessions import content
from companion.speech import transcript as transcripts
from companion.speech.schemas import JobKind
from companion.store.keyring import Keyring
from companion.store.models import CodevSession


@dataclass(frozen=True)
class PhaseText:
    """A note, or a (possibly corrected) transcript segment."""

    id: str
    text: str
    # The note's author, or whoever recorded the segment until speakers are labelled (None
    # when the recording is gone).
    author_id: str | None
    segment: bool = False
    # A live stream is one participant's microphone; an uploaded recording is of the room.
    live: bool = False
    speaker: str | None = None
    start_s: float | None = None
    end_s: float | None = None


def stamps_of(db: Session, session: CodevSession, phase: Phase) -> dict[str, str]:
    """What `texts_of` would return, told apart without opening anything: each text's id and
    a stamp that changes when its text does (a note is never edited; a segment, corrected)."""
    stamps = dict.fromkeys(content.note_ids(db, session, phase), "note")
    stamps.update(transcripts.segment_stamps(db, session, phase))
    return stamps


def texts_of(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    phase: Phase,
    only: Collection[str] | None = None,
) -> list[PhaseText]:
    """The phase's notes, then its transcript segments, each in the order they were said;
    only those of `only` (ids), when given."""
    if only is not None and not only:
        return []
    found = [
        PhaseText(id=n.id, text=n.body, author_id=n.author.user_id)
        for n in content.notes(db, keys, session, phase, only)
    ]
    if only is not None and len(found) == len(only):
        return found  # notes only: no transcript to read
    segments = transcripts.transcript(db, keys, session, phase, only).segments
    recordings = {job.id: job for job in transcripts.jobs_of(db, session)} if segments else {}
    for segment in segments:
        job = recordings.get(segment.job_id)
        found.append(
            PhaseText(
                id=segment.id,
                text=segment.text,
                author_id=job.uploaded_by if job is not None else None,
                segment=True,
                live=job is not None and job.kind == JobKind.live,
                speaker=segment.speaker,
                start_s=segment.start,
                end_s=segment.end,
            )
        )
    return found
