from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class CycleView(BaseModel):
    id: str
    number: int
    size: int
    sessions: int
    started_at: datetime
    closed_at: datetime | None


class Candidate(BaseModel):
    user_id: str
    name: str


class RotationView(BaseModel):
    cycle_id: str
    candidates: list[Candidate]
    already_client: list[Candidate]
    sessions_planned: int
    cycle_size: int
