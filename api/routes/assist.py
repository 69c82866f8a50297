from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api.deps import (
    AppStateDep,
    AssistDep,
    DbSession,
    GatewayDep,
    KeysDep,
    SessionClient,
    SessionFacilitator,
)
from api.responses import MODEL_CALL, MODEL_DOWN, conflict
from companion.assist import service
from companion.assist.clarity import ClarityView
from companion.assist.contract import ContractDrafts
from companion.sessions.service import require_open

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])


@router.get("/clarity")
def clarity_prompts(
    ctx: SessionFacilitator,
    db: DbSession,
    keys: KeysDep,
    state: AppStateDep,
    assist: AssistDep,
    background: BackgroundTasks,
) -> ClarityView:
    """For the facilitator: each clarifying question classified (disguised advice, judgment,
    interpretation, closed or open), the facets still unclear, open questions to suggest.

    Cues decide at once (`source: cue`); a question no cue decided shows the '?' rule
    (`source: rule`) until the model has reviewed it in the background (`source: model`,
    with its `reason`); `pending` counts those still waiting, `review_error` says why when
    no model is configured or the last try failed."""
    view = service.clarity_prompts(
        db, keys, ctx.group, ctx.session, model_configured=state.model_configured()
    )
    if view.pending and view.review_error is None:  # the runner takes it up at once
        background.add_task(assist.poke_clarity, ctx.session.id)
    return view


@router.post("/clarity/review", responses={**conflict("The session is closed."), **MODEL_CALL})
def review_clarity(
    ctx: SessionFacilitator, db: DbSession, keys: KeysDep, state: AppStateDep
) -> ClarityView:
    """For the facilitator: have the model review now the questions no cue decided (it is
    otherwise done in the background while phase 2 runs), and return the clarity view. On a
    model error nothing is lost: GET …/clarity keeps the cue flags and says what failed."""
    require_open(ctx.session)
    service.review_clarity(db, keys, state.llm, ctx.group, ctx.session)
    return service.clarity_prompts(db, keys, ctx.group, ctx.session, model_configured=True)


@router.post("/contract/drafts", responses={**conflict("Nothing to draft from yet."), **MODEL_DOWN})
def contract_drafts(
    ctx: SessionClient, db: DbSession, keys: KeysDep, gateway: GatewayDep
) -> ContractDrafts:
    """For the client: up to three one-sentence contract candidates that pass every check."""
    return service.contract_drafts(db, keys, gateway, ctx.group, ctx.session)
