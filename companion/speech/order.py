"""The order in which workers take queued recordings: fair between groups.

Workers claim the first job of this order (companion.speech.jobs); the job views and the
queue's depth show each job's place in it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.speech.schemas import JobKind, JobStatus
from companion.store.models import TranscriptionJob, utcnow


def fair_order(db: Session) -> list[str]:
    """Queued job ids in the order one worker would take them.

    Round robin over groups: the next job comes from the group with the fewest jobs running,
    then the one whose last job started longest ago (never: first); within a group, oldest
    first.
    """
    queued = db.execute(
        select(TranscriptionJob.id, TranscriptionJob.group_id)
        .where(TranscriptionJob.status == JobStatus.queued)
        .order_by(TranscriptionJob.created_at, TranscriptionJob.id)
    ).all()
    if not queued:
        return []
    by_group: dict[str, list[str]] = {}
    for job_id, group_id in queued:
        by_group.setdefault(group_id, []).append(job_id)
    groups = list(by_group)
    # Live connections use no worker: they do not count against their group here.
    uploads = (
        TranscriptionJob.group_id.in_(groups),
        TranscriptionJob.kind == JobKind.upload,
    )
    last_started = dict(
        db.execute(
            select(TranscriptionJob.group_id, func.max(TranscriptionJob.started_at))
            .where(*uploads)
            .group_by(TranscriptionJob.group_id)
        ).all()
    )
    running = dict(
        db.execute(
            select(TranscriptionJob.group_id, func.count())
            .where(*uploads, TranscriptionJob.status == JobStatus.running)
            .group_by(TranscriptionJob.group_id)
        ).all()
    )
    epoch = datetime.min.replace(tzinfo=utcnow().tzinfo)
    # (running, last start, first queued position) per group; a pick moves its group last.
    rank = {
        g: [running.get(g, 0), _aware(last_started.get(g)) or epoch, i]
        for i, g in enumerate(groups)
    }
    order: list[str] = []
    tick = 0
    while by_group:
        group = min(by_group, key=lambda g: tuple(rank[g]))
        order.append(by_group[group].pop(0))
        if not by_group[group]:
            del by_group[group]
        tick += 1
        rank[group][1] = utcnow() + timedelta(days=3650, seconds=tick)
    return order


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite's max() comes back naive
        return value.replace(tzinfo=utcnow().tzinfo)
    return value
