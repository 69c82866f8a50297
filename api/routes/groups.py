from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import (
    AdminUser,
    AppStateDep,
    CurrentUser,
    DbSession,
    GroupManager,
    GroupMember,
    KeysDep,
)
from companion.groups import service
from companion.groups.schemas import GroupCreate, GroupUpdate, GroupView

router = APIRouter(prefix="/groups", tags=["groups"])


@router.post("", status_code=201)
def create_group(spec: GroupCreate, admin: AdminUser, db: DbSession, keys: KeysDep) -> GroupView:
    """Create a group with its own data key; `facilitator_ids` become its facilitators."""
    group = service.create_group(db, keys, admin, spec)
    return service.view_for(db, keys, group, admin)


@router.get("")
def my_groups(user: CurrentUser, db: DbSession, keys: KeysDep) -> list[GroupView]:
    return [service.view(keys, g, role) for g, role in service.groups_of(db, user)]


@router.get("/{group_id}")
def get_group(ctx: GroupMember, keys: KeysDep) -> GroupView:
    return service.view(keys, ctx.group, ctx.role)


@router.patch("/{group_id}")
def update_group(spec: GroupUpdate, ctx: GroupManager, db: DbSession, keys: KeysDep) -> GroupView:
    group = service.update_group(db, keys, ctx.user, ctx.group, spec)
    return service.view(keys, group, ctx.role)


@router.delete("/{group_id}", status_code=204)
def delete_group(ctx: GroupManager, db: DbSession, keys: KeysDep, state: AppStateDep) -> Response:
    """Delete the group and destroy its key: its data can never be read again."""
    service.delete_group(db, keys, ctx.user, ctx.group, state.settings.data_dir)
    return Response(status_code=204)
