from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbSession, KeysDep, SessionClient, SessionMember
from companion.sessions import content
from companion.sessions.schemas import ContractSet, ContractView

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}/contract", tags=["contract"])


@router.get("")
def get_contract(ctx: SessionMember, db: DbSession, keys: KeysDep) -> ContractView:
    return content.contract(db, keys, ctx.session)


@router.put("")
def confirm_contract(
    spec: ContractSet, ctx: SessionClient, db: DbSession, keys: KeysDep
) -> ContractView:
    """The client confirms the request to the group, in exactly one sentence."""
    content.set_contract(db, keys, ctx.user, ctx.session, spec.text)
    return content.contract(db, keys, ctx.session)
