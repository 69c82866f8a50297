"""One-time sign-in links for the web app, made by an administrator or a facilitator.

They live with the groups because who may invite whom follows group membership.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts import service as accounts
from companion.accounts import signin
from companion.accounts.schemas import InvitationView, PersonInvite
from companion.audit import service as audit
from companion.config import Settings
from companion.errors import Forbidden
from companion.groups import service as groups
from companion.groups.schemas import Role
from companion.store.keyring import Keyring
from companion.store.models import Group, Membership, User


def may_invite(db: Session, actor: User, user: User) -> bool:
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


def invite_user(
    db: Session, keys: Keyring, actor: User, user_id: str, *, settings: Settings
) -> InvitationView:
    """A new one-time link for an existing person (older unused links stay valid until they
    expire)."""
    user = accounts.get_user(db, user_id)
    if not may_invite(db, actor, user):
        raise Forbidden("Only an administrator, or a facilitator of one of their groups, can.")
    audit.record(db, actor.id, None, groups.LINK_MADE, "user", user.id)
    # A link signs in as its person: each of their groups' facilitators sees it was made.
    for member in db.scalars(select(Membership).where(Membership.user_id == user.id)):
        audit.record(db, actor.id, member.group_id, groups.LINK_MADE, "user", user.id)
    return _link(db, keys, actor, user, settings)


def invite_person(
    db: Session, keys: Keyring, actor: User, group: Group, spec: PersonInvite, *, settings: Settings
) -> InvitationView:
    """A new person, added to the group with `spec.role`, and their one-time link."""
    user = accounts.create_user(db, keys, spec.name)
    audit.record(db, actor.id, group.id, "user.create", "user", user.id)
    groups.add_member(db, actor, group, user.id, Role(spec.role))
    audit.record(db, actor.id, group.id, groups.LINK_MADE, "user", user.id)
    return _link(db, keys, actor, user, settings)


def _link(
    db: Session, keys: Keyring, actor: User, user: User, settings: Settings
) -> InvitationView:
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
