from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AdminUser, AppStateDep, CurrentUser, DbSession, KeysDep
from api.responses import Responses, conflict
from companion.accounts import service as accounts
from companion.accounts.schemas import TokenView, UserCreate, UserCreated, UserView
from companion.audit import service as audit
from companion.errors import Conflict, Forbidden
from companion.store.models import User

router = APIRouter(prefix="/users", tags=["users"])

SELF_OR_ADMIN: Responses = {
    403: {"description": "Only the person themselves or an administrator manages these tokens."}
}


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


def _self_or_admin(caller: User, user_id: str) -> None:
    if caller.id != user_id and not caller.is_admin:
        raise Forbidden("Only the person themselves or an administrator manages these tokens.")


@router.post(
    "/{user_id}/tokens",
    status_code=201,
    responses={403: {"description": "Only for yourself: invite another person instead."}},
)
def new_token(user_id: str, caller: CurrentUser, db: DbSession) -> dict[str, str]:
    """A new token for yourself; older ones stay valid until revoked or expired. Nobody mints a
    token for another person (they sign in by an invitation link)."""
    if caller.id != user_id:
        raise Forbidden(
            "You can only issue tokens for yourself; invite the person instead "
            "(POST /groups/{group_id}/invitations)."
        )
    token = accounts.issue_token(db, caller)
    audit.record(db, caller.id, None, "token.issue", "user", caller.id)
    return {"token": token}


@router.get("/{user_id}/tokens", responses=SELF_OR_ADMIN)
def list_tokens(
    user_id: str, caller: CurrentUser, db: DbSession, state: AppStateDep
) -> list[TokenView]:
    """The person's tokens (never their secrets): for themselves and administrators."""
    _self_or_admin(caller, user_id)
    return accounts.tokens(db, accounts.get_user(db, user_id), state.settings.token_lifetime)


@router.delete("/{user_id}/tokens/{token_id}", status_code=204, responses=SELF_OR_ADMIN)
def revoke_token(user_id: str, token_id: str, caller: CurrentUser, db: DbSession) -> Response:
    """Revoke one token: it answers 401 from the next request on, live streams included."""
    _self_or_admin(caller, user_id)
    accounts.revoke_token(db, accounts.get_user(db, user_id), token_id)
    audit.record(db, caller.id, None, "token.revoke", "user", user_id)
    return Response(status_code=204)


@router.post(
    "/{user_id}/deactivate", responses=conflict("An administrator cannot deactivate themselves.")
)
def deactivate(user_id: str, admin: AdminUser, db: DbSession, keys: KeysDep) -> UserView:
    """For administrators: every token and sign-in of the person dead at once, their open live
    streams closed at their next check (about a second); what they wrote stays."""
    if admin.id == user_id:
        raise Conflict("You cannot deactivate yourself; another administrator can.")
    user = accounts.get_user(db, user_id)
    accounts.deactivate(db, user)
    audit.record(db, admin.id, None, "user.deactivate", "user", user.id)
    return accounts.view(keys, user)
