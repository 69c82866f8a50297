from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import DbSession, GroupManager
from companion.llm import audit
from companion.llm.audit import ModelCallView

router = APIRouter(tags=["model calls"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/groups/{group_id}/model-calls")
def group_model_calls(
    ctx: GroupManager, db: DbSession, limit: Limit = 200, offset: Offset = 0
) -> list[ModelCallView]:
    """Every model call made for this group, allowed or refused, newest first: when, why,
    which endpoint host and model, the policy decision, the outcome, token counts. Never
    content."""
    return audit.entries(db, ctx.group.id, limit, offset)
