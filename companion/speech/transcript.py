"""What a session's members read of its transcription, and the corrections participants make.

The jobs of a session with their progress and ETA, the transcript (done recordings' segments,
and live ones' as they are stored, with the live streams' provisional text), and the
correction of a segment. The workers that write the transcript are companion.speech.jobs.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from companion.audit import service as audit
from companion.method.phases import PHASES, Phase
from companion.sessions.service import get_in_session, require_open
from companion.speech.order import fair_order
from companion.speech.schemas import (
    JobKind,
    JobStatus,
    JobView,
    ProvisionalView,
    SegmentView,
    TranscriptView,
)
from companion.store import outbox as memory
from companion.store.keyring import SYSTEM_SCOPE, Keyring
from companion.store.models import (
    CodevSession,
    TranscriptionJob,
    TranscriptSegment,
    User,
    utcnow,
)

DEFAULT_RTF = 0.2  # seconds of work per second of audio, until done jobs say better


# --- jobs -----------------------------------------------------------------------------------


def get_job(db: Session, session: CodevSession, job_id: str) -> TranscriptionJob:
    return get_in_session(
        db,
        TranscriptionJob,
        job_id,
        session,
        missing=f"No transcription job with id {job_id} in this session.",
    )


def jobs_of(db: Session, session: CodevSession) -> list[TranscriptionJob]:
    return list(
        db.scalars(
            select(TranscriptionJob)
            .where(TranscriptionJob.session_id == session.id)
            .order_by(TranscriptionJob.created_at, TranscriptionJob.id)
        )
    )


def _rtf(db: Session) -> float:
    """Seconds of work per second of audio over the latest done jobs."""
    rows = db.execute(
        select(
            TranscriptionJob.started_at,
            TranscriptionJob.finished_at,
            TranscriptionJob.audio_seconds,
        )
        .where(
            TranscriptionJob.status == JobStatus.done,
            TranscriptionJob.started_at.is_not(None),
            TranscriptionJob.kind == JobKind.upload,  # live jobs last as long as the speech
        )
        .order_by(TranscriptionJob.finished_at.desc())
        .limit(20)
    ).all()
    work = sum((f - s).total_seconds() for s, f, _ in rows if s and f)
    heard = sum(a for _, _, a in rows)
    return work / heard if heard > 0 and work > 0 else DEFAULT_RTF


def job_view(db: Session, job: TranscriptionJob, workers: int = 1) -> JobView:
    now = utcnow()
    status = JobStatus(job.status)
    rtf = _rtf(db)
    eta: float | None = None
    position: int | None = None
    if job.kind == JobKind.live:
        pass  # transcribed while it is said: no queue, no ETA
    elif status is JobStatus.running and job.started_at is not None:
        elapsed = (now - job.started_at).total_seconds()
        if job.progress >= 0.05:
            eta = elapsed * (1 - job.progress) / job.progress
        else:
            eta = max(job.audio_seconds * rtf - elapsed, 1.0)
    elif status is JobStatus.queued:
        order = fair_order(db)
        position = order.index(job.id) if job.id in order else None
        ahead = order[: position or 0]
        ahead_seconds = (
            db.scalar(
                select(func.coalesce(func.sum(TranscriptionJob.audio_seconds), 0.0)).where(
                    TranscriptionJob.id.in_(ahead)
                )
            )
            if ahead
            else 0.0
        )
        eta = (float(ahead_seconds or 0.0) / max(workers, 1) + job.audio_seconds) * rtf
    count = db.scalar(select(func.count()).where(TranscriptSegment.job_id == job.id))
    return JobView(
        id=job.id,
        group_id=job.group_id,
        session_id=job.session_id,
        phase=Phase(job.phase),
        status=status,
        progress=round(job.progress, 4),
        percent=int(job.progress * 100),
        eta_seconds=round(eta, 1) if eta is not None else None,
        queue_position=position,
        audio_seconds=job.audio_seconds,
        audio_format=job.audio_format,
        audio_kept=job.audio_kept,
        segments=int(count or 0),
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


# --- the transcript -------------------------------------------------------------------------


def _segment_view(keys: Keyring, group_id: str, row: TranscriptSegment) -> SegmentView:
    return SegmentView(
        id=row.id,
        job_id=row.job_id,
        phase=Phase(row.phase),
        index=row.position,
        start=row.start_s,
        end=row.end_s,
        text=keys.open(group_id, row, "text"),
        speaker=keys.open(group_id, row, "speaker") if row.speaker_sealed else None,
        edited=row.edited,
        updated_at=row.updated_at,
    )


def _shown(session: CodevSession, phase: Phase | None) -> list[ColumnElement[bool]]:
    """The segments a transcript shows: done jobs' and live ones' (of `phase`, if given)."""
    where = [
        TranscriptSegment.session_id == session.id,
        (TranscriptionJob.status == JobStatus.done) | (TranscriptionJob.kind == JobKind.live),
    ]
    if phase is not None:
        where.append(TranscriptSegment.phase == phase)
    return where


def segment_stamps(db: Session, session: CodevSession, phase: Phase | None) -> dict[str, str]:
    """Each shown segment's id and when it last changed (a correction), nothing opened."""
    rows = db.execute(
        select(TranscriptSegment.id, TranscriptSegment.updated_at)
        .join(TranscriptionJob, TranscriptionJob.id == TranscriptSegment.job_id)
        .where(*_shown(session, phase))
    )
    return {row.id: row.updated_at.isoformat() for row in rows}


def transcript(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    phase: Phase | None = None,
    only: Collection[str] | None = None,
) -> TranscriptView:
    """Done jobs' segments, and live ones' as they are stored (those of `only`, when given).
    Within a phase: an upload at its upload time, a live segment at the time it was said, so
    several participants' live streams interleave."""
    query = (
        select(TranscriptSegment, TranscriptionJob.created_at, TranscriptionJob.kind)
        .join(TranscriptionJob, TranscriptionJob.id == TranscriptSegment.job_id)
        .where(*_shown(session, phase))
    )
    if only is not None:
        query = query.where(TranscriptSegment.id.in_(only))
    rows = list(db.execute(query).all())
    order = {p.value: i for i, p in enumerate(PHASES)}

    def when(seg: TranscriptSegment, created: datetime, kind: str) -> datetime:
        return created + timedelta(seconds=seg.start_s if kind == JobKind.live else 0)

    rows.sort(key=lambda r: (order[r[0].phase], when(*r), r[0].job_id, r[0].position))
    pending_query = select(func.count()).where(
        TranscriptionJob.session_id == session.id,
        TranscriptionJob.status.in_([JobStatus.queued, JobStatus.running]),
    )
    if phase is not None:
        pending_query = pending_query.where(TranscriptionJob.phase == phase)
    return TranscriptView(
        session_id=session.id,
        phase=phase,
        segments=[_segment_view(keys, session.group_id, r[0]) for r in rows],
        pending_jobs=int(db.scalar(pending_query) or 0),
        provisional=_provisional(db, keys, session, phase),
    )


def _provisional(
    db: Session, keys: Keyring, session: CodevSession, phase: Phase | None
) -> list[ProvisionalView]:
    """The running live jobs' provisional texts (companion.speech.live), oldest stream first."""
    query = (
        select(TranscriptionJob, User)
        .outerjoin(User, User.id == TranscriptionJob.uploaded_by)
        .where(
            TranscriptionJob.session_id == session.id,
            TranscriptionJob.status == JobStatus.running,
            TranscriptionJob.provisional_sealed.is_not(None),
        )
        .order_by(TranscriptionJob.created_at, TranscriptionJob.id)
    )
    if phase is not None:
        query = query.where(TranscriptionJob.phase == phase)
    return [
        ProvisionalView(
            job_id=job.id,
            phase=Phase(job.phase),
            speaker=keys.open(SYSTEM_SCOPE, user, "name") if user is not None else None,
            text=keys.open(session.group_id, job, "provisional"),
            updated_at=job.provisional_at or job.created_at,
        )
        for job, user in db.execute(query).all()
    ]


def edit_segment(
    db: Session,
    keys: Keyring,
    *,
    actor: User,
    session: CodevSession,
    segment_id: str,
    text: str,
) -> SegmentView:
    """A participant corrects a segment; the transcript keeps the corrected text."""
    require_open(session)
    row = get_in_session(
        db,
        TranscriptSegment,
        segment_id,
        session,
        missing=f"No transcript segment with id {segment_id} in this session.",
    )
    keys.seal(session.group_id, row, "text", text)
    row.edited = True
    row.edited_by = actor.id
    row.updated_at = utcnow()
    db.flush()
    memory.enqueue(db, session.group_id, "segment", row.id)
    audit.record(db, actor.id, session.group_id, "transcript.edit", "transcript_segment", row.id)
    return _segment_view(keys, session.group_id, row)
