from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, WithJsonSchema, field_validator

from companion.method.phases import Language, Phase
from companion.method.policy import Policy
from companion.text import Integer, Name


class Role(StrEnum):
    facilitator = "facilitator"
    member = "member"


# A phase's timebox; checked by _check_timeboxes, whose message names the phase.
Minutes = Annotated[Integer, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 240})]


def _check_timeboxes(value: dict[Phase, int] | None) -> dict[Phase, int] | None:
    for phase, minutes in (value or {}).items():
        if not 1 <= minutes <= 240:
            raise ValueError(f"the timebox of '{phase}' must be between 1 and 240 minutes")
    return value


class GroupCreate(BaseModel):
    name: Name
    language: Language = Language.fr
    policy: Policy = Policy.on_prem
    timeboxes: dict[Phase, Minutes] | None = Field(
        default=None, description="Minutes per phase (1-240); phases left out keep the defaults."
    )
    keep_audio: StrictBool = False  # booleans and numbers are strict in requests, as in the schema
    facilitator_ids: list[str] = Field(default_factory=list, max_length=20)

    _timeboxes = field_validator("timeboxes")(_check_timeboxes)


class GroupUpdate(BaseModel):
    name: Name | None = None
    language: Language | None = None
    policy: Policy | None = None
    timeboxes: dict[Phase, Minutes] | None = Field(
        default=None, description="Minutes per phase (1-240); phases left out keep theirs."
    )
    keep_audio: StrictBool | None = None

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


class Notice(BaseModel):
    """A way in that the group's facilitators are shown: an administrator who joined the
    group, or a sign-in link made for one of its members."""

    action: str
    at: datetime
    actor: str | None  # who did it (their name)
    person: str | None  # who joined, or whom the link signs in as
