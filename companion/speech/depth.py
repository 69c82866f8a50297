"""Queue depth: what waits and what runs, for a group's members and for operators."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.method.phases import Phase
from companion.speech.order import fair_order
from companion.speech.schemas import (
    GroupQueueView,
    JobKind,
    JobStatus,
    QueueDepthView,
    QueuedJob,
)
from companion.store.models import TranscriptionJob, utcnow

_UNFINISHED = (JobStatus.queued, JobStatus.running)
_IS_LIVE = TranscriptionJob.kind == JobKind.live


def group_queue(db: Session, group_id: str, workers: int) -> GroupQueueView:
    """The group's unfinished jobs in the order workers take them, and the totals they wait
    behind (counts only: other groups' jobs are not shown)."""
    order = {job_id: i for i, job_id in enumerate(fair_order(db))}
    rows = db.scalars(
        select(TranscriptionJob).where(
            TranscriptionJob.group_id == group_id, TranscriptionJob.status.in_(_UNFINISHED)
        )
    ).all()
    mine = [
        QueuedJob(
            id=job.id,
            session_id=job.session_id,
            phase=Phase(job.phase),
            status=JobStatus(job.status),
            live=job.kind == JobKind.live,
            position=order.get(job.id),
            audio_seconds=job.audio_seconds,
            created_at=job.created_at,
        )
        for job in rows
    ]
    mine.sort(key=lambda j: (j.position is not None, j.position or 0, j.created_at))
    totals = dict(
        db.execute(
            select(TranscriptionJob.status, func.count())
            .where(TranscriptionJob.status.in_(_UNFINISHED), ~_IS_LIVE)
            .group_by(TranscriptionJob.status)
        ).all()
    )
    uploads = [j for j in mine if not j.live]
    return GroupQueueView(
        queued=sum(j.status is JobStatus.queued for j in uploads),
        running=sum(j.status is JobStatus.running for j in uploads),
        live=sum(j.live for j in mine),
        queued_all=int(totals.get(JobStatus.queued, 0)),
        running_all=int(totals.get(JobStatus.running, 0)),
        workers=workers,
        jobs=mine,
    )


def depth(db: Session, messages: int, workers: int) -> QueueDepthView:
    """Every group together, for operators."""
    counts = {
        (status, bool(live)): int(n)
        for status, live, n in db.execute(
            select(TranscriptionJob.status, _IS_LIVE, func.count()).group_by(
                TranscriptionJob.status, _IS_LIVE
            )
        ).all()
    }
    oldest = db.scalar(
        select(func.min(TranscriptionJob.created_at)).where(
            TranscriptionJob.status == JobStatus.queued
        )
    )
    if oldest is not None and oldest.tzinfo is None:  # SQLite's min() comes back naive
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)

    def total(status: JobStatus) -> int:
        return counts.get((status, False), 0) + counts.get((status, True), 0)

    return QueueDepthView(
        queued=total(JobStatus.queued),
        running=counts.get((JobStatus.running, False), 0),
        live=counts.get((JobStatus.running, True), 0),
        done=total(JobStatus.done),
        failed=total(JobStatus.failed),
        oldest_queued_s=round((utcnow() - oldest).total_seconds(), 1) if oldest else None,
        messages=messages,
        workers=workers,
    )
