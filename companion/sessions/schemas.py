from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from companion.method.phases import Phase
from companion.text import Integer, LongText, Name

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day_text(value: Any) -> Any:
    """A day is sent as YYYY-MM-DD, as `format: date` says (pydantic alone also takes numbers
    and times)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_day_text)]


class SessionStatus(StrEnum):
    planned = "planned"
    running = "running"
    closed = "closed"


class PhaseStatus(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"


class Person(BaseModel):
    user_id: str
    name: str


class SessionCreate(BaseModel):
    client_id: str
    consultant_ids: list[str] | None = Field(
        default=None, max_length=50, description="Default: every other member of the group."
    )
    cycle_id: str | None = Field(default=None, description="Default: the group's open cycle.")
    override_reason: Name | None = Field(
        default=None, description="Required when the client already had a turn in this cycle."
    )


class PhaseView(BaseModel):
    phase: Phase
    number: int
    title: str
    status: PhaseStatus
    started_at: datetime | None
    ended_at: datetime | None
    elapsed_seconds: int
    timebox_minutes: int
    overrun: bool


class CurrentPhase(PhaseView):
    reminder: str


class SessionView(BaseModel):
    id: str
    group_id: str
    cycle_id: str
    status: SessionStatus
    client: Person
    facilitator: Person
    consultants: list[Person]
    override_reason: str | None
    current_phase: CurrentPhase | None
    next_phase: Phase | None
    allowed_moves: list[str]
    phases: list[PhaseView]
    created_at: datetime
    closed_at: datetime | None


class NoteCreate(BaseModel):
    body: LongText


class NoteView(BaseModel):
    id: str
    phase: Phase
    author: Person
    body: str
    created_at: datetime


class ContractSet(BaseModel):
    text: Name = Field(description="The client's request to the group, in exactly one sentence.")


class ContractView(BaseModel):
    text: str
    confirmed_by: Person
    confirmed_at: datetime


class ActionStatus(StrEnum):
    open = "open"
    done = "done"
    dropped = "dropped"


class ActionCreate(BaseModel):
    objective: Name
    first_step: Name
    indicator: Name
    due_date: Day
    resources: Name | None = Field(default=None, description="What the action needs, if said.")


class ActionUpdate(BaseModel):
    objective: Name | None = None
    first_step: Name | None = None
    indicator: Name | None = None
    resources: Name | None = None
    due_date: Day | None = None
    status: ActionStatus | None = None


class ProgressCreate(BaseModel):
    note: LongText
    noted_on: Day | None = Field(default=None, description="Default: today.")


class ProgressView(BaseModel):
    id: str
    note: str
    noted_on: date
    author: Person


class ActionView(BaseModel):
    id: str
    session_id: str
    objective: str
    first_step: str
    indicator: str
    resources: str | None
    due_date: date
    status: ActionStatus
    overdue: bool
    progress: list[ProgressView]
    created_at: datetime
    updated_at: datetime


class ActionPlanView(BaseModel):
    session_id: str
    client: Person
    actions: list[ActionView]


class LearningSet(BaseModel):
    text: LongText
    rating: Integer = Field(
        ge=1, le=5, description="How the session went, 1 (poorly) to 5 (very well)."
    )


class LearningView(BaseModel):
    author: Person
    text: str
    rating: int
    created_at: datetime


class LearningsView(BaseModel):
    learnings: list[LearningView]
    average_rating: float | None
