from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.accounts.service import get_user, user_name
from companion.audit import service as audit
from companion.cycles.schemas import Candidate, CycleView, RotationView
from companion.errors import Conflict, NotFound
from companion.groups.schemas import Role
from companion.method import rotation
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Cycle, Group, Membership, User, new_id, utcnow


def member_ids(db: Session, group: Group) -> list[str]:
    """Members who take client turns (facilitators guard the frame and do not consult)."""
    return list(
        db.scalars(
            select(Membership.user_id)
            .where(Membership.group_id == group.id, Membership.role == Role.member)
            .order_by(Membership.joined_at, Membership.id)
        )
    )


def open_cycle(db: Session, group: Group) -> Cycle | None:
    return db.scalar(select(Cycle).where(Cycle.group_id == group.id, Cycle.closed_at.is_(None)))


def get_cycle(db: Session, group: Group, cycle_id: str) -> Cycle:
    cycle = db.get(Cycle, cycle_id)
    if cycle is None or cycle.group_id != group.id:
        raise NotFound(f"No cycle with id {cycle_id} in this group.")
    return cycle


def past_clients(db: Session, cycle: Cycle) -> list[str]:
    return list(db.scalars(select(CodevSession.client_id).where(CodevSession.cycle_id == cycle.id)))


def start_cycle(db: Session, actor: User, group: Group) -> Cycle:
    current = open_cycle(db, group)
    if current is not None:
        raise Conflict(f"Cycle {current.number} is still open; close it before starting another.")
    size = len(member_ids(db, group))
    if size == 0:
        raise Conflict("The group has no members with the role 'member' yet; add them first.")
    last = db.scalar(select(func.max(Cycle.number)).where(Cycle.group_id == group.id)) or 0
    cycle = Cycle(id=new_id(), group_id=group.id, number=last + 1, size=size)
    db.add(cycle)
    db.flush()
    audit.record(db, actor.id, group.id, "cycle.start", "cycle", cycle.id)
    return cycle


def close_cycle(db: Session, actor: User, cycle: Cycle) -> Cycle:
    if cycle.closed_at is not None:
        raise Conflict("This cycle is already closed.")
    cycle.closed_at = utcnow()
    audit.record(db, actor.id, cycle.group_id, "cycle.close", "cycle", cycle.id)
    return cycle


def view(db: Session, cycle: Cycle) -> CycleView:
    return CycleView(
        id=cycle.id,
        number=cycle.number,
        size=cycle.size,
        sessions=len(past_clients(db, cycle)),
        started_at=cycle.started_at,
        closed_at=cycle.closed_at,
    )


def cycles(db: Session, group: Group) -> list[CycleView]:
    rows = db.scalars(select(Cycle).where(Cycle.group_id == group.id).order_by(Cycle.number))
    return [view(db, c) for c in rows]


def proposal(db: Session, keys: Keyring, group: Group, cycle: Cycle) -> RotationView:
    plan = rotation.propose(member_ids(db, group), past_clients(db, cycle), cycle.size)

    def named(ids: list[str]) -> list[Candidate]:
        return [Candidate(user_id=i, name=user_name(keys, get_user(db, i))) for i in ids]

    return RotationView(
        cycle_id=cycle.id,
        candidates=named(plan.candidates),
        already_client=named(plan.already_client),
        sessions_planned=plan.sessions_planned,
        cycle_size=plan.cycle_size,
    )
