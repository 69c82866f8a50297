from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, CurrentUser, DbSession, KeysDep
from companion.accounts import service as accounts
from companion.accounts.schemas import UserCreate, UserCreated, UserView
from companion.audit import service as audit
from companion.errors import Forbidden

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=201)
def create_user(spec: UserCreate, admin: AdminUser, db: DbSession, keys: KeysDep) -> UserCreated:
    """Create an account; its token is shown once, only in this answer."""
    user = accounts.create_user(db, keys, spec.name, is_admin=spec.is_admin)
    token = accounts.issue_token(db, user)
    audit.record(db, admin.id, None, "user.create", "user", user.id)
    return UserCreated(**accounts.view(keys, user).model_dump(), token=token)


@router.get("")
def list_users(_admin: AdminUser, db: DbSession, keys: KeysDep) -> list[UserView]:
    return accounts.users(db, keys)


@router.get("/me")
def me(user: CurrentUser, keys: KeysDep) -> UserView:
    return accounts.view(keys, user)


@router.post("/{user_id}/tokens", status_code=201)
def new_token(user_id: str, caller: CurrentUser, db: DbSession) -> dict[str, str]:
    """A new token for yourself (or, for an administrator, for anyone); older ones stay valid."""
    if caller.id != user_id and not caller.is_admin:
        raise Forbidden("You can only issue tokens for yourself.")
    user = accounts.get_user(db, user_id)
    token = accounts.issue_token(db, user)
    audit.record(db, caller.id, None, "token.issue", "user", user.id)
    return {"token": token}
