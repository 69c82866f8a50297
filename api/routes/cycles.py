from __future__ import annotations

from fastapi import APIRouter

from api.deps import GroupFacilitator, GroupMember, KeysDep, SessionDep
from companion.cycles import service
from companion.cycles.views import CycleView, RotationView

router = APIRouter(prefix="/groups/{group_id}/cycles", tags=["cycles"])


@router.get("")
def list_cycles(ctx: GroupMember, db: SessionDep) -> list[CycleView]:
    return service.cycles(db, ctx.group)


@router.post("", status_code=201)
def start_cycle(ctx: GroupFacilitator, db: SessionDep) -> CycleView:
    """Start a cycle of as many sessions as the group has members."""
    return service.view(db, service.start_cycle(db, ctx.user, ctx.group))


@router.get("/{cycle_id}")
def get_cycle(cycle_id: str, ctx: GroupMember, db: SessionDep) -> CycleView:
    return service.view(db, service.get_cycle(db, ctx.group, cycle_id))


@router.post("/{cycle_id}/close")
def close_cycle(cycle_id: str, ctx: GroupFacilitator, db: SessionDep) -> CycleView:
    cycle = service.close_cycle(db, ctx.user, service.get_cycle(db, ctx.group, cycle_id))
    return service.view(db, cycle)


@router.get("/{cycle_id}/rotation")
def rotation(cycle_id: str, ctx: GroupMember, db: SessionDep, keys: KeysDep) -> RotationView:
    """Who can be client next: the members not yet client in this cycle."""
    return service.proposal(db, keys, ctx.group, service.get_cycle(db, ctx.group, cycle_id))
