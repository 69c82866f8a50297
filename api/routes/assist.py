from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request

from api.deps import (
    DbSession,
    GatewayDep,
    KeysDep,
    SessionClient,
    SessionFacilitator,
    app_state,
)
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
    request: Request,
    background: BackgroundTasks,
) -> ClarityView:
    """For the facilitator: each clarifying question classified (disguised advice, judgment,
    interpretation, closed or open), the facets still unclear, open questions to suggest.

    Cues decide at once (`source: cue`); a question no cue decided shows the '?' rule
    (`source: rule`) until the model has reviewed it in the background (`source: model`,
    with its `reason`); `pending` counts those still waiting, `review_error` says why when
    no model is configured or the last try failed."""
    state = app_state(request)
    view = service.clarity_prompts(
        db, keys, ctx.group, ctx.session, model_configured=state.model_configured()
    )
    if view.pending and view.review_error is None:  # the runner takes it up at once
        background.add_task(request.app.state.assist.poke_clarity, ctx.session.id)
    return view


@router.post(
    "/clarity/review",
    responses={
        409: {"description": "The session is closed."},
        502: {"description": "The model's answer did not match the format, twice; retry."},
        503: {"description": "No model configured, or the model server is down."},
    },
)
def review_clarity(
    ctx: SessionFacilitator, db: DbSession, keys: KeysDep, request: Request
) -> ClarityView:
    """For the facilitator: have the model review now the questions no cue decided (it is
    otherwise done in the background while phase 2 runs), and return the clarity view. On a
    model error nothing is lost: GET …/clarity keeps the cue flags and says what failed."""
    require_open(ctx.session)
    state = app_state(request)
    service.review_clarity(db, keys, state.llm, ctx.group, ctx.session)
    return service.clarity_prompts(db, keys, ctx.group, ctx.session, model_configured=True)


@router.post(
    "/contract/drafts",
    responses={
        409: {"description": "Nothing to draft from yet."},
        503: {"description": "Model down."},
    },
)
def contract_drafts(
    ctx: SessionClient, db: DbSession, keys: KeysDep, gateway: GatewayDep
) -> ContractDrafts:
    """For the client: up to three one-sentence contract candidates that pass every check."""
    return service.contract_drafts(db, keys, gateway, ctx.group, ctx.session)
