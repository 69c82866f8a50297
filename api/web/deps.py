"""What pages need of the request: the signed-in person, by the web session's cookie only.

Pages use the API's own access dependencies (`SessionMember`, `GroupFacilitator`…), which
accept the cookie, so a page shows a role exactly what the API lets it read; `Viewer` adds the
person's name for the page's header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.deps import DbSession, KeysDep, Unauthenticated, web_session
from companion.accounts import service as accounts
from companion.store.models import User


@dataclass(frozen=True)
class Me:
    id: str
    name: str
    is_admin: bool


def viewer(request: Request, db: DbSession, keys: KeysDep) -> User:
    row = web_session(request, db)
    user = db.get(User, row.user_id) if row is not None else None
    if user is None:
        raise Unauthenticated("Sign in with the invitation link you were given.")
    request.state.me = Me(user.id, accounts.user_name(keys, user), user.is_admin)
    return user


Viewer = Annotated[User, Depends(viewer)]
