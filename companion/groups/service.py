"""Groups and membership. A group's data key is created with it and shredded with it."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from companion.accounts.service import get_user, name_of, user_name
from companion.audit import service as audit
from companion.errors import Conflict, Invalid, NotFound
from companion.groups.schemas import (
    GroupCreate,
    GroupUpdate,
    GroupView,
    MemberView,
    Notice,
    Role,
)
from companion.method.phases import Language, Phase, default_timeboxes
from companion.store import outbox as memory
from companion.store.keyring import Keyring
from companion.store.models import (
    AuditEvent,
    CodevSession,
    Group,
    Membership,
    ModelCall,
    User,
    new_id,
)


def _not_found(group_id: str) -> NotFound:
    return NotFound(f"No group with id {group_id} among your groups.")


def get_group(db: Session, group_id: str) -> Group:
    group = db.get(Group, group_id)
    if group is None:
        raise _not_found(group_id)
    return group


def membership(db: Session, group_id: str, user_id: str) -> Membership | None:
    return db.scalar(
        select(Membership).where(Membership.group_id == group_id, Membership.user_id == user_id)
    )


def timeboxes(group: Group) -> dict[Phase, int]:
    merged = default_timeboxes()
    merged.update({Phase(k): v for k, v in group.timeboxes.items()})
    return merged


def view(keys: Keyring, group: Group, my_role: Role | None = None) -> GroupView:
    return GroupView(
        id=group.id,
        name=keys.open(group.id, group, "name"),
        language=Language(group.language),
        policy=group.policy,
        timeboxes=timeboxes(group),
        keep_audio=group.keep_audio,
        created_at=group.created_at,
        my_role=my_role,
    )


def role_in(db: Session, group_id: str, user_id: str) -> Role | None:
    """The person's role in the group; None when they are not a member."""
    member = membership(db, group_id, user_id)
    return Role(member.role) if member is not None else None


def view_for(db: Session, keys: Keyring, group: Group, user: User) -> GroupView:
    """The group as `user` sees it: with their role in it, if any."""
    return view(keys, group, role_in(db, group.id, user.id))


def all_groups(db: Session, keys: Keyring, viewer: User) -> list[GroupView]:
    """Every group of the deployment, oldest first (for administrators)."""
    rows = db.scalars(select(Group).order_by(Group.created_at, Group.id)).all()
    return [view_for(db, keys, group, viewer) for group in rows]


def create_group(db: Session, keys: Keyring, actor: User, spec: GroupCreate) -> Group:
    group = Group(
        id=new_id(),
        language=spec.language,
        policy=spec.policy,
        timeboxes={str(k): v for k, v in (spec.timeboxes or {}).items()},
        keep_audio=spec.keep_audio,
    )
    keys.create(group.id)
    keys.seal(group.id, group, "name", spec.name)
    db.add(group)
    db.flush()
    for user_id in dict.fromkeys(spec.facilitator_ids):
        _add(db, group, user_id, Role.facilitator)
    audit.record(db, actor.id, group.id, "group.create", "group", group.id)
    return group


def update_group(db: Session, keys: Keyring, actor: User, group: Group, spec: GroupUpdate) -> Group:
    changes = spec.model_dump(exclude_unset=True)
    if "name" in changes and spec.name is not None:
        keys.seal(group.id, group, "name", spec.name)
    for attr in ("language", "policy", "keep_audio"):
        if changes.get(attr) is not None:
            setattr(group, attr, changes[attr])
    if spec.timeboxes is not None:
        merged = dict(group.timeboxes)
        merged.update({str(k): v for k, v in spec.timeboxes.items()})
        group.timeboxes = merged
    audit.record(db, actor.id, group.id, "group.update", "group", group.id)
    return group


def audio_dir(data_dir: Path, group_id: str) -> Path:
    """Where the group's recordings wait (as companion.speech.audio.audio_path lays them out)."""
    return data_dir / "audio" / group_id


def forget_orphan_audio(db: Session, data_dir: Path) -> list[str]:
    """Remove the recordings directories of groups that no longer exist (older versions left
    them, emptied, on deletion); the group ids they were named after."""
    root = data_dir / "audio"
    if not root.is_dir():
        return []
    known = set(db.scalars(select(Group.id)))
    gone = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in known)
    for name in gone:
        shutil.rmtree(root / name, ignore_errors=True)
    return gone


def delete_group(db: Session, keys: Keyring, actor: User, group: Group, data_dir: Path) -> None:
    """Crypto-shredding: the key goes first, then the rows; the audit keeps only the event.
    The deletion is committed here; then the group's recordings directory goes (its files
    can no longer be opened, but its name is the group's id), and the memory's after-commit
    hook drops and shreds the group's collection (companion.memory.service.drop_group)."""
    group_id = group.id
    keys.shred(group.id)
    memory.forget_group(db, group.id)  # its collection is dropped once this commits
    # Sessions reference users; delete them explicitly so no backend depends on cascade order.
    db.execute(delete(CodevSession).where(CodevSession.group_id == group.id))
    db.execute(delete(AuditEvent).where(AuditEvent.group_id == group.id))
    db.execute(delete(ModelCall).where(ModelCall.group_id == group.id))
    db.delete(group)
    audit.record(db, actor.id, None, "group.delete", "group", group.id)
    db.commit()
    if db.get_bind().dialect.name == "sqlite":
        # Older pages in the write-ahead log still hold the shredded key and the group's rows:
        # fold the log into the file (secure_delete zeroes them there) and empty it.
        db.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    shutil.rmtree(audio_dir(data_dir, group_id), ignore_errors=True)


def _add(db: Session, group: Group, user_id: str, role: Role) -> Membership:
    try:
        get_user(db, user_id)
    except NotFound as exc:
        raise Invalid(f"No user with id {user_id}; create the account first.") from exc
    if membership(db, group.id, user_id) is not None:
        raise Conflict(f"User {user_id} is already a member of this group.")
    member = Membership(id=new_id(), group_id=group.id, user_id=user_id, role=role)
    db.add(member)
    db.flush()
    return member


# What the group's facilitators are shown of who came to read it (access_notices).
ADMIN_JOINED = "member.admin_joined"  # an administrator made themselves a member
LINK_MADE = "invitation.create"  # a sign-in link was made for one of the group's members
NOTICED = (ADMIN_JOINED, LINK_MADE)


def add_member(db: Session, actor: User, group: Group, user_id: str, role: Role) -> Membership:
    # An administrator manages the group without reading it; making themselves a member is
    # what lets them read it, so the group's audit says so apart, for its facilitators.
    joins = actor.id == user_id and actor.is_admin and membership(db, group.id, actor.id) is None
    member = _add(db, group, user_id, role)
    audit.record(db, actor.id, group.id, ADMIN_JOINED if joins else "member.add", "user", user_id)
    return member


def access_notices(db: Session, keys: Keyring, group: Group, limit: int = 20) -> list[Notice]:
    """The latest times someone came to read this group by a door its facilitators should
    know of: an administrator joining, a sign-in link made for a member; newest first."""
    rows = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.group_id == group.id, AuditEvent.action.in_(NOTICED))
        .order_by(AuditEvent.at.desc())
        .limit(limit)
    )
    return [
        Notice(
            action=row.action,
            at=row.at,
            actor=name_of(db, keys, row.actor_id) if row.actor_id else None,
            person=name_of(db, keys, row.target_id) if row.target_id else None,
        )
        for row in rows
    ]


def _existing(db: Session, group: Group, user_id: str) -> Membership:
    member = membership(db, group.id, user_id)
    if member is None:
        raise NotFound(f"User {user_id} is not a member of this group.")
    return member


def _keep_a_facilitator(db: Session, group: Group, leaving: Membership) -> None:
    if leaving.role != Role.facilitator:
        return
    others = db.scalars(
        select(Membership).where(
            Membership.group_id == group.id,
            Membership.role == Role.facilitator,
            Membership.id != leaving.id,
        )
    ).all()
    if not others:
        raise Conflict("A group keeps at least one facilitator; appoint another one first.")


def set_role(db: Session, actor: User, group: Group, user_id: str, role: Role) -> Membership:
    member = _existing(db, group, user_id)
    if role != Role.facilitator:
        _keep_a_facilitator(db, group, member)
    member.role = role
    audit.record(db, actor.id, group.id, "member.role", "user", user_id)
    return member


def remove_member(db: Session, actor: User, group: Group, user_id: str) -> None:
    member = _existing(db, group, user_id)
    _keep_a_facilitator(db, group, member)
    db.delete(member)
    audit.record(db, actor.id, group.id, "member.remove", "user", user_id)


def members(db: Session, keys: Keyring, group: Group) -> list[MemberView]:
    rows = db.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.group_id == group.id)
        .order_by(Membership.joined_at, Membership.id)
    ).all()
    return [
        MemberView(user_id=u.id, name=user_name(keys, u), role=m.role, joined_at=m.joined_at)
        for m, u in rows
    ]


def member(db: Session, keys: Keyring, group: Group, user_id: str) -> MemberView:
    """One member of the group, as `members` lists them."""
    return next(m for m in members(db, keys, group) if m.user_id == user_id)


def invitable(db: Session, group: Group) -> set[str]:
    """The members a facilitator may make new sign-in links for: those who are not
    administrators."""
    return set(
        db.scalars(
            select(Membership.user_id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.group_id == group.id, ~User.is_admin)
        )
    )


def groups_of(db: Session, user: User) -> list[tuple[Group, Role]]:
    rows = db.execute(
        select(Group, Membership.role)
        .join(Membership, Membership.group_id == Group.id)
        .where(Membership.user_id == user.id)
        .order_by(Group.created_at)
    ).all()
    return [(g, Role(r)) for g, r in rows]
