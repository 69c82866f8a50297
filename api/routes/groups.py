from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

from api.deps import AdminUser, CurrentUser, DbSession, GroupManager, GroupMember, KeysDep
from companion.groups import service
from companion.groups.schemas import GroupCreate, GroupUpdate, GroupView

router = APIRouter(prefix="/groups", tags=["groups"])


@router.post("", status_code=201)
def create_group(spec: GroupCreate, admin: AdminUser, db: DbSession, keys: KeysDep) -> GroupView:
    """Create a group with its own data key; `facilitator_ids` become its facilitators."""
    group = service.create_group(db, keys, admin, spec)
    membership = service.membership(db, group.id, admin.id)
    return service.view(keys, group, membership.role if membership else None)  # type: ignore[arg-type]


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
def delete_group(ctx: GroupManager, db: DbSession, keys: KeysDep) -> Response:
    """Delete the group and destroy its key: its data can never be read again."""
    service.delete_group(db, keys, ctx.user, ctx.group)
    if db.get_bind().dialect.name == "sqlite":
        # Older pages in the write-ahead log still hold the shredded key and the group's rows:
        # commit, then fold the log into the file (secure_delete zeroes them there) and empty it.
        db.commit()
        db.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return Response(status_code=204)
