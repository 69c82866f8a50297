from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.store.models import AuditEvent, new_id


class AuditEntry(BaseModel):
    id: str
    at: datetime
    actor_id: str | None
    group_id: str | None
    action: str
    target_type: str | None
    target_id: str | None


def record(
    db: Session,
    actor_id: str | None,
    group_id: str | None,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
) -> None:
    db.add(
        AuditEvent(
            id=new_id(),
            actor_id=actor_id,
            group_id=group_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
        )
    )


def entries(
    db: Session, group_id: str | None, limit: int = 200, offset: int = 0
) -> list[AuditEntry]:
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id)
    if group_id is not None:
        query = query.where(AuditEvent.group_id == group_id)
    rows = db.scalars(query.limit(limit).offset(offset)).all()
    return [AuditEntry.model_validate(row, from_attributes=True) for row in rows]
