from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import DbSession, GroupManager, GroupMember, KeysDep
from companion.groups import service
from companion.groups.schemas import MemberAdd, MemberUpdate, MemberView

router = APIRouter(prefix="/groups/{group_id}/members", tags=["members"])


@router.get("")
def list_members(ctx: GroupMember, db: DbSession, keys: KeysDep) -> list[MemberView]:
    return service.members(db, keys, ctx.group)


@router.post("", status_code=201)
def add_member(spec: MemberAdd, ctx: GroupManager, db: DbSession, keys: KeysDep) -> MemberView:
    service.add_member(db, ctx.user, ctx.group, spec.user_id, spec.role)
    return service.member(db, keys, ctx.group, spec.user_id)


@router.patch("/{user_id}")
def change_role(
    user_id: str, spec: MemberUpdate, ctx: GroupManager, db: DbSession, keys: KeysDep
) -> MemberView:
    service.set_role(db, ctx.user, ctx.group, user_id, spec.role)
    return service.member(db, keys, ctx.group, user_id)


@router.delete("/{user_id}", status_code=204)
def remove_member(user_id: str, ctx: GroupManager, db: DbSession) -> Response:
    service.remove_member(db, ctx.user, ctx.group, user_id)
    return Response(status_code=204)
