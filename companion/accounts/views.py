from __future__ import annotations

from pydantic import BaseModel

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
