"""The consultation's ideas grouped into themes, for everyone in the session; the facilitator
corrects the grouping."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api.deps import (
    AssistDep,
    DbSession,
    EmbedDep,
    KeysDep,
    SessionFacilitator,
    SessionMember,
)
from api.responses import Responses, conflict, unavailable
from companion.assist.ideas import flows
from companion.assist.ideas.schemas import IdeaMove, IdeasView, ThemeMerge, ThemeRename
from companion.assist.synthesis.runner import AssistRunner
from companion.method.phases import Language, Phase

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])


@router.get(
    "/ideas",
    responses={
        **conflict("The consultation (phase 4) has not started."),
        **unavailable("The embedding model cannot be used right now."),
    },
)
def ideas(ctx: SessionMember, db: DbSession, keys: KeysDep, embed: EmbedDep) -> IdeasView:
    """The consultants' ideas of phase 4, each exactly as said and linked to its note or
    transcript segment, grouped into themes that keep their ids as ideas arrive; near-duplicates
    are marked. Brought up to date on each call (and in the background while phase 4 runs)."""
    return flows.current(db, keys, ctx.session, Language(ctx.group.language), embed)


CORRECTION: Responses = {
    404: {"description": "No such idea or theme in this session."},
    **conflict("Phase 4 has not started, or the session is closed."),
    **unavailable("The embedding model cannot be used right now; nothing changed."),
}


def _answer(
    done: flows.Corrected, session_id: str, assist: AssistRunner, background: BackgroundTasks
) -> IdeasView:
    if done.changed:  # after the response: the draft synthesis and model labels are redone
        background.add_task(assist.changed, session_id, Phase.consultation)
    return done.ideas


@router.put("/ideas/{idea_id}/theme", responses=CORRECTION)
def move_idea(
    idea_id: str,
    spec: IdeaMove,
    ctx: SessionFacilitator,
    db: DbSession,
    keys: KeysDep,
    embed: EmbedDep,
    assist: AssistDep,
    background: BackgroundTasks,
) -> IdeasView:
    """The facilitator moves an idea to another theme (`theme_id`), or to a new theme of its
    own (`theme_id: null`); a theme left empty is deleted. Later ideas are placed by where the
    ideas now are."""
    done = flows.move_idea(
        db,
        keys,
        embed=embed,
        actor=ctx.user,
        session=ctx.session,
        language=Language(ctx.group.language),
        idea_id=idea_id,
        theme_id=spec.theme_id,
    )
    return _answer(done, ctx.session.id, assist, background)


@router.put("/themes/{theme_id}/label", responses=CORRECTION)
def rename_theme(
    theme_id: str,
    spec: ThemeRename,
    ctx: SessionFacilitator,
    db: DbSession,
    keys: KeysDep,
    embed: EmbedDep,
    assist: AssistDep,
    background: BackgroundTasks,
) -> IdeasView:
    """The facilitator names a theme (`label_source: edited`): neither the key words nor the
    model replace that label afterwards."""
    done = flows.rename_theme(
        db,
        keys,
        embed=embed,
        actor=ctx.user,
        session=ctx.session,
        language=Language(ctx.group.language),
        theme_id=theme_id,
        label=spec.label,
    )
    return _answer(done, ctx.session.id, assist, background)


@router.post("/themes/{theme_id}/merge", responses=CORRECTION)
def merge_theme(
    theme_id: str,
    spec: ThemeMerge,
    ctx: SessionFacilitator,
    db: DbSession,
    keys: KeysDep,
    embed: EmbedDep,
    assist: AssistDep,
    background: BackgroundTasks,
) -> IdeasView:
    """The facilitator merges a theme into another (`into`): its ideas move there and it is
    deleted; the other keeps its id, number and label."""
    done = flows.merge_themes(
        db,
        keys,
        embed=embed,
        actor=ctx.user,
        session=ctx.session,
        language=Language(ctx.group.language),
        theme_id=theme_id,
        into=spec.into,
    )
    return _answer(done, ctx.session.id, assist, background)
