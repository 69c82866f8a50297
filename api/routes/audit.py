from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, DbSession, GroupManager, Limit, Offset
from companion.audit import service
from companion.audit.service import AuditEntry

router = APIRouter(tags=["audit"])


@router.get("/groups/{group_id}/audit")
def group_audit(
    ctx: GroupManager, db: DbSession, limit: Limit = 200, offset: Offset = 0
) -> list[AuditEntry]:
    """Who did what in this group and when; never content. Newest first."""
    return service.entries(db, ctx.group.id, limit, offset)


@router.get("/audit")
def all_audit(
    _admin: AdminUser, db: DbSession, limit: Limit = 200, offset: Offset = 0
) -> list[AuditEntry]:
    """The whole deployment's audit log, for administrators."""
    return service.entries(db, None, limit, offset)
