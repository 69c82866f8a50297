from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbSession, GroupManager, Limit, Offset
from companion.llm import audit
from companion.llm.audit import ModelCallView

router = APIRouter(tags=["model calls"])


@router.get("/groups/{group_id}/model-calls")
def group_model_calls(
    ctx: GroupManager, db: DbSession, limit: Limit = 200, offset: Offset = 0
) -> list[ModelCallView]:
    """Every model call made for this group, allowed or refused, newest first: when, why,
    which endpoint host and model, the policy decision, the outcome, token counts. Never
    content."""
    return audit.entries(db, ctx.group.id, limit, offset)
