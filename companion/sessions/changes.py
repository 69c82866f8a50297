"""What has changed in a session, as one short fingerprint per topic, read from the database.

Open pages follow a session through these fingerprints (api/web/routes/events.py): no
process keeps the state, so any number of API processes can serve the same room, and a page
that reconnects is brought up to date by comparing fingerprints again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, or_, select
from sqlalchemy.orm import Session

from companion.method.phases import Phase
from companion.store.models import (
    Action,
    ClarityReview,
    CodevSession,
    Contract,
    Idea,
    Learning,
    Note,
    PhaseRun,
    RegulationSummary,
    Synthesis,
    Theme,
    TranscriptionJob,
    TranscriptSegment,
)

TOPICS = (
    "phase",
    "transcript",
    "notes",
    "clarity",
    "contract",
    "ideas",
    "synthesis",
    "plan",
    "learnings",
)


def _digest(rows: Iterable[Any]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for row in rows:
        h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def fingerprints(db: Session, session_id: str) -> dict[str, str]:
    """One fingerprint per topic of TOPICS; a topic whose fingerprint moved has news."""
    session = db.get(CodevSession, session_id)
    if session is None:
        return {}
    sid = session_id
    runs = db.execute(select(PhaseRun.phase, PhaseRun.ended_at).where(PhaseRun.session_id == sid))
    phase = _digest([(session.completed, session.running), *runs])
    segments, jobs = _recorded(db, sid)
    transcript, notes = _transcript(segments, jobs), _notes(db, sid)
    reviews = _digest(
        db.execute(
            select(func.count(), func.max(ClarityReview.updated_at)).where(
                ClarityReview.session_id == sid
            )
        )
    )
    contract = _digest(db.execute(select(Contract.confirmed_at).where(Contract.session_id == sid)))
    ideas = _digest(
        list(
            db.execute(
                select(Idea.id, Idea.theme_id).where(Idea.session_id == sid).order_by(Idea.id)
            )
        )
        + list(
            db.execute(
                select(Theme.id, Theme.label_source, Theme.label_sealed)
                .where(Theme.session_id == sid)
                .order_by(Theme.id)
            )
        )
    )
    draft = _digest(
        db.execute(
            select(Synthesis.status, Synthesis.updated_at).where(Synthesis.session_id == sid)
        )
    )
    plan = _digest(
        db.execute(
            select(func.count(), func.max(Action.updated_at)).where(Action.session_id == sid)
        )
    )
    learnings = _digest(
        list(
            db.execute(
                select(func.count(), func.max(Learning.created_at)).where(
                    Learning.session_id == sid
                )
            )
        )
        + list(
            db.execute(
                select(RegulationSummary.updated_at).where(RegulationSummary.session_id == sid)
            )
        )
    )
    # The clarity view reads what was said in phases 1-2, what the client says in phase 4 (an
    # alert) and the model's reviews; not the consultants' notes of phase 4, so that each of
    # them does not reload the facilitator's panel.
    before = (Phase.presentation.value, Phase.clarification.value)
    client = Note.author_id == session.client_id
    asked = _digest(
        db.execute(
            select(func.count(), func.max(Note.created_at)).where(
                Note.session_id == sid, or_(Note.phase.in_(before), client)
            )
        )
    )
    clarity = _digest([(session.running, asked, segments, reviews)])
    return {
        "phase": phase,
        "transcript": transcript,
        "notes": notes,
        "clarity": clarity,
        "contract": contract,
        "ideas": ideas,
        "synthesis": draft,
        "plan": plan,
        "learnings": learnings,
    }


# A recording as the fingerprints read it: its id, status, and when its provisional text changed.
Recording = Row[str, str, datetime | None]


def _recorded(db: Session, sid: str) -> tuple[str, list[Recording]]:
    """The fingerprint of the session's transcript segments, and its recordings (id, status,
    when their provisional text last changed)."""
    segments = _digest(
        db.execute(
            select(func.count(), func.max(TranscriptSegment.updated_at)).where(
                TranscriptSegment.session_id == sid
            )
        )
    )
    jobs = list(
        db.execute(
            select(TranscriptionJob.id, TranscriptionJob.status, TranscriptionJob.provisional_at)
            .where(TranscriptionJob.session_id == sid)
            .order_by(TranscriptionJob.id)
        )
    )
    return segments, jobs


def _transcript(segments: str, jobs: list[Recording]) -> str:
    # The panel also shows the live streams' provisional text, and how many recordings wait.
    return _digest([(segments,), *jobs])


def _notes(db: Session, sid: str) -> str:
    return _digest(
        db.execute(select(func.count(), func.max(Note.created_at)).where(Note.session_id == sid))
    )


def transcript_fingerprint(db: Session, session_id: str) -> str:
    """The fingerprint of everything the transcript panel shows (the `transcript` topic)."""
    return _transcript(*_recorded(db, session_id))


def said(db: Session, session_id: str) -> str:
    """One fingerprint of what the session's ideas are made from: its notes and its stored
    transcript segments. An upload's segments count once its job is done; the live streams'
    provisional text, which changes every few seconds, makes no idea and is left out."""
    segments, jobs = _recorded(db, session_id)
    return _digest([(segments, _notes(db, session_id)), *((job.id, job.status) for job in jobs)])
