from __future__ import annotations

from fastapi import APIRouter

from api.deps import GatewayDep, KeysDep, SessionClient, SessionDep, SessionFacilitator
from companion.assist import service
from companion.assist.clarity import ClarityView
from companion.assist.contract import ContractDrafts

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])


@router.get("/clarity")
def clarity_prompts(ctx: SessionFacilitator, db: SessionDep, keys: KeysDep) -> ClarityView:
    """For the facilitator: each clarifying question classified (disguised advice, judgment,
    interpretation, closed or open), the facets still unclear, open questions to suggest."""
    return service.clarity_prompts(db, keys, ctx.group, ctx.session)


@router.post(
    "/contract/drafts",
    responses={
        409: {"description": "Nothing to draft from yet."},
        503: {"description": "Model down."},
    },
)
def contract_drafts(
    ctx: SessionClient, db: SessionDep, keys: KeysDep, gateway: GatewayDep
) -> ContractDrafts:
    """For the client: up to three one-sentence contract candidates that pass every check."""
    return service.contract_drafts(db, keys, gateway, ctx.group, ctx.session)
