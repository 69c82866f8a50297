"""One-time sign-in links for the web app, made by an administrator or a facilitator."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from api.deps import CurrentUser, DbSession, GroupManager, KeysDep, app_state
from companion.accounts import service as accounts
from companion.accounts import signin
from companion.accounts.schemas import InvitationView, PersonInvite
from companion.audit import service as audit
from companion.errors import Forbidden
from companion.groups import service as groups
from companion.groups.schemas import Role
from companion.store.models import Membership, User

router = APIRouter(tags=["invitations"])


def _link(
    request: Request, db: DbSession, keys: KeysDep, actor: User, user: User
) -> InvitationView:
    settings = app_state(request).settings
    issued = signin.invite(
        db, user, created_by=actor.id, valid_for=timedelta(days=settings.invitation_days)
    )
    path = f"/join/{issued.token}"
    return InvitationView(
        user_id=user.id,
        name=accounts.user_name(keys, user),
        path=path,
        url=settings.resolved_public_url + path,
        expires_at=issued.expires_at,
    )


def _may_invite(db: DbSession, actor: User, user: User) -> bool:
    """An administrator invites anyone; a facilitator, the non-administrators of their groups."""
    if actor.is_admin:
        return True
    if user.is_admin:
        return False
    theirs = {m.group_id for m in db.query(Membership).filter_by(user_id=user.id)}
    led = {
        m.group_id
        for m in db.query(Membership).filter_by(user_id=actor.id, role=Role.facilitator.value)
    }
    return bool(theirs & led)


@router.post("/users/{user_id}/invitations", status_code=201)
def invite_user(
    user_id: str, actor: CurrentUser, request: Request, db: DbSession, keys: KeysDep
) -> InvitationView:
    """A new one-time link for a person (older unused links stay valid until they expire)."""
    user = accounts.get_user(db, user_id)
    if not _may_invite(db, actor, user):
        raise Forbidden("Only an administrator, or a facilitator of one of their groups, can.")
    audit.record(db, actor.id, None, "invitation.create", "user", user.id)
    return _link(request, db, keys, actor, user)


@router.post("/groups/{group_id}/invitations", status_code=201)
def invite_person(
    spec: PersonInvite, ctx: GroupManager, request: Request, db: DbSession, keys: KeysDep
) -> InvitationView:
    """A new person, added to the group with `role`, and their one-time link."""
    user = accounts.create_user(db, keys, spec.name)
    audit.record(db, ctx.user.id, ctx.group.id, "user.create", "user", user.id)
    groups.add_member(db, ctx.user, ctx.group, user.id, Role(spec.role))
    audit.record(db, ctx.user.id, ctx.group.id, "invitation.create", "user", user.id)
    return _link(request, db, keys, ctx.user, user)
