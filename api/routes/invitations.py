"""One-time sign-in links for the web app, made by an administrator or a facilitator."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AppStateDep, CurrentUser, DbSession, GroupManager, KeysDep
from companion.accounts.schemas import InvitationView, PersonInvite
from companion.groups import invitations

router = APIRouter(tags=["invitations"])


@router.post(
    "/users/{user_id}/invitations",
    status_code=201,
    responses={
        403: {"description": "Only an administrator, or a facilitator of one of their groups."}
    },
)
def invite_user(
    user_id: str, actor: CurrentUser, state: AppStateDep, db: DbSession, keys: KeysDep
) -> InvitationView:
    """A new one-time link for a person (older unused links stay valid until they expire)."""
    return invitations.invite_user(db, keys, actor, user_id, settings=state.settings)


@router.post("/groups/{group_id}/invitations", status_code=201)
def invite_person(
    spec: PersonInvite, ctx: GroupManager, state: AppStateDep, db: DbSession, keys: KeysDep
) -> InvitationView:
    """A new person, added to the group with `role`, and their one-time link."""
    return invitations.invite_person(db, keys, ctx.user, ctx.group, spec, settings=state.settings)
