from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from companion.text import Name


class UserView(BaseModel):
    id: str
    name: str
    is_admin: bool


class UserCreate(BaseModel):
    name: Name
    is_admin: bool = False


class UserCreated(UserView):
    token: str


class InvitationView(BaseModel):
    """A one-time sign-in link: shown once, in this answer only."""

    user_id: str
    name: str
    path: str
    url: str
    expires_at: datetime


class PersonInvite(BaseModel):
    name: Name
    role: str = Field(default="member", pattern="^(member|facilitator)$")
