"""The audit of model calls: one row per request to a model, allowed or refused. Never content."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.store.models import ModelCall, new_id


class ModelCallView(BaseModel):
    id: str
    at: datetime
    group_id: str
    purpose: str
    endpoint_host: str
    model: str
    policy: str
    decision: Literal["allowed", "refused"]
    outcome: Literal["ok", "error", "cancelled"]
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_ms: int


def record(
    db: Session,
    *,
    group_id: str,
    purpose: str,
    endpoint_host: str,
    model: str,
    policy: str,
    decision: Literal["allowed", "refused"],
    error: str | None,
    duration_ms: int,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    cancelled: bool = False,
) -> None:
    db.add(
        ModelCall(
            id=new_id(),
            group_id=group_id,
            purpose=purpose,
            endpoint_host=endpoint_host[:255],
            model=model[:200],
            policy=policy,
            decision=decision,
            outcome="cancelled" if cancelled else "ok" if error is None else "error",
            error=error,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            duration_ms=duration_ms,
        )
    )


def entries(db: Session, group_id: str, limit: int = 200, offset: int = 0) -> list[ModelCallView]:
    """The group's model calls, newest first."""
    query = (
        select(ModelCall)
        .where(ModelCall.group_id == group_id)
        .order_by(ModelCall.at.desc(), ModelCall.id)
        .limit(limit)
        .offset(offset)
    )
    return [ModelCallView.model_validate(row, from_attributes=True) for row in db.scalars(query)]


def latest(db: Session, group_ids: Iterable[str], most: int) -> list[ModelCallView]:
    """The newest `most` model calls of these groups together."""
    calls = (c for group_id in group_ids for c in entries(db, group_id, most))
    return sorted(calls, key=lambda c: c.at, reverse=True)[:most]
