from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from companion.text import Name


class UserView(BaseModel):
    id: str
    name: str
    is_admin: bool
    deactivated_at: datetime | None = Field(
        default=None, description="Since then none of their tokens or sign-ins works."
    )


class UserCreate(BaseModel):
    name: Name
    is_admin: StrictBool = False  # true or false, as the schema says (not 0, 1 or "yes")


class UserCreated(UserView):
    token: str


class TokenView(BaseModel):
    """One of a person's API tokens; never its secret."""

    id: str
    created_at: datetime
    expires_at: datetime = Field(description="It stops working then (COMPANION_TOKEN_DAYS).")
    revoked_at: datetime | None
    active: bool = Field(description="Neither revoked nor expired.")


class InvitationView(BaseModel):
    """A one-time sign-in link: shown once, in this answer only."""

    user_id: str
    name: str
    path: str
    url: str
    expires_at: datetime


class PersonInvite(BaseModel):
    name: Name
    role: Literal["member", "facilitator"] = "member"
