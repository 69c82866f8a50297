from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbSession, GroupFacilitator, GroupMember, KeysDep
from companion.cycles import service
from companion.cycles.schemas import CycleView, RotationView

router = APIRouter(prefix="/groups/{group_id}/cycles", tags=["cycles"])


@router.get("")
def list_cycles(ctx: GroupMember, db: DbSession) -> list[CycleView]:
    return service.cycles(db, ctx.group)


@router.post("", status_code=201)
def start_cycle(ctx: GroupFacilitator, db: DbSession) -> CycleView:
    """Start a cycle of as many sessions as the group has members."""
    return service.view(db, service.start_cycle(db, ctx.user, ctx.group))


@router.get("/{cycle_id}")
def get_cycle(cycle_id: str, ctx: GroupMember, db: DbSession) -> CycleView:
    return service.view(db, service.get_cycle(db, ctx.group, cycle_id))


@router.post("/{cycle_id}/close")
def close_cycle(cycle_id: str, ctx: GroupFacilitator, db: DbSession) -> CycleView:
    cycle = service.close_cycle(db, ctx.user, service.get_cycle(db, ctx.group, cycle_id))
    return service.view(db, cycle)


@router.get("/{cycle_id}/rotation")
def rotation(cycle_id: str, ctx: GroupMember, db: DbSession, keys: KeysDep) -> RotationView:
    """Who can be client next: the members not yet client in this cycle."""
    return service.proposal(db, keys, ctx.group, service.get_cycle(db, ctx.group, cycle_id))
