from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from companion.method.phases import Language, Phase
from companion.method.policy import Policy
from companion.text import Name


class Role(StrEnum):
    facilitator = "facilitator"
    member = "member"


Minutes = Field(ge=1, le=240)


def _check_timeboxes(value: dict[Phase, int] | None) -> dict[Phase, int] | None:
    for phase, minutes in (value or {}).items():
        if not 1 <= minutes <= 240:
            raise ValueError(f"the timebox of '{phase}' must be between 1 and 240 minutes")
    return value


class GroupCreate(BaseModel):
    name: Name
    language: Language = Language.fr
    policy: Policy = Policy.on_prem
    timeboxes: dict[Phase, int] | None = Field(
        default=None, description="Minutes per phase; phases left out keep the defaults."
    )
    keep_audio: bool = False
    facilitator_ids: list[str] = Field(default_factory=list, max_length=20)

    _timeboxes = field_validator("timeboxes")(_check_timeboxes)


class GroupUpdate(BaseModel):
    name: Name | None = None
    language: Language | None = None
    policy: Policy | None = None
    timeboxes: dict[Phase, int] | None = None
    keep_audio: bool | None = None

    _timeboxes = field_validator("timeboxes")(_check_timeboxes)


class GroupView(BaseModel):
    id: str
    name: str
    language: Language
    policy: Policy
    timeboxes: dict[Phase, int]
    keep_audio: bool
    created_at: datetime
    my_role: Role | None = None


class MemberAdd(BaseModel):
    user_id: str
    role: Role = Role.member


class MemberUpdate(BaseModel):
    role: Role


class MemberView(BaseModel):
    user_id: str
    name: str
    role: Role
    joined_at: datetime
