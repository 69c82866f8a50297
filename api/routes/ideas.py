"""The consultation's ideas grouped into themes, for everyone in the session; the facilitator
corrects the grouping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from sqlalchemy.orm import Session

from api.deps import (
    DbSession,
    EmbedDep,
    KeysDep,
    SessionContext,
    SessionFacilitator,
    SessionMember,
)
from companion.assist.ideas import corrections, service
from companion.assist.ideas.schemas import IdeaMove, IdeasView, ThemeMerge, ThemeRename
from companion.assist.ideas.service import Embed
from companion.method.phases import Language, Phase
from companion.store.keyring import Keyring

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])


@router.get(
    "/ideas",
    responses={
        409: {"description": "The consultation (phase 4) has not started."},
        503: {"description": "The embedding model cannot be used right now."},
    },
)
def ideas(ctx: SessionMember, db: DbSession, keys: KeysDep, embed: EmbedDep) -> IdeasView:
    """The consultants' ideas of phase 4, each exactly as said and linked to its note or
    transcript segment, grouped into themes that keep their ids as ideas arrive; near-duplicates
    are marked. Brought up to date on each call (and in the background while phase 4 runs)."""
    service.require_consultation(ctx.session)
    with service.session_lock(ctx.session.id):
        service.refresh(db, keys, ctx.session, Language(ctx.group.language), embed)
        db.commit()  # inside the lock: the background runner reads what this call added
    return service.view(db, keys, ctx.session)


CORRECTION: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such idea or theme in this session."},
    409: {"description": "Phase 4 has not started, or the session is closed."},
    503: {"description": "The embedding model cannot be used right now; nothing changed."},
}


@dataclass(frozen=True)
class Correction:
    """What a facilitator's correction of the grouping needs, as one dependency."""

    ctx: SessionContext
    db: Session
    keys: Keyring
    embed: Embed
    request: Request
    background: BackgroundTasks

    def apply(self, fix: Callable[[Language], bool]) -> IdeasView:
        """Bring the ideas up to date, then apply `fix`, all under the session's lock (as GET
        …/ideas and the background runner do); what changed is drafted and labelled again."""
        session, db = self.ctx.session, self.db
        corrections.require_correctable(session)
        language = Language(self.ctx.group.language)
        with service.session_lock(session.id):
            service.refresh(db, self.keys, session, language, self.embed)
            db.commit()  # the ideas brought up to date stand, whatever the correction finds
            try:
                changed = fix(language)
                db.commit()
            except BaseException:
                db.rollback()  # inside the lock: the runner never sees half a correction
                raise
        if changed:  # after the response: the draft synthesis and model labels are redone
            assist = self.request.app.state.assist
            self.background.add_task(assist.changed, session.id, Phase.consultation)
        return service.view(db, self.keys, session)


def _correction(
    ctx: SessionFacilitator,
    db: DbSession,
    keys: KeysDep,
    embed: EmbedDep,
    request: Request,
    background: BackgroundTasks,
) -> Correction:
    return Correction(ctx, db, keys, embed, request, background)


CorrectionDep = Annotated[Correction, Depends(_correction)]


@router.put("/ideas/{idea_id}/theme", responses=CORRECTION)
def move_idea(idea_id: str, spec: IdeaMove, fix: CorrectionDep) -> IdeasView:
    """The facilitator moves an idea to another theme (`theme_id`), or to a new theme of its
    own (`theme_id: null`); a theme left empty is deleted. Later ideas are placed by where the
    ideas now are."""
    ctx = fix.ctx
    return fix.apply(
        lambda language: corrections.move_idea(
            fix.db, fix.keys, ctx.user, ctx.session, language, idea_id, spec.theme_id
        )
    )


@router.put("/themes/{theme_id}/label", responses=CORRECTION)
def rename_theme(theme_id: str, spec: ThemeRename, fix: CorrectionDep) -> IdeasView:
    """The facilitator names a theme (`label_source: edited`): neither the key words nor the
    model replace that label afterwards."""
    ctx = fix.ctx
    return fix.apply(
        lambda _: corrections.rename_theme(
            fix.db, fix.keys, ctx.user, ctx.session, theme_id, spec.label
        )
    )


@router.post("/themes/{theme_id}/merge", responses=CORRECTION)
def merge_theme(theme_id: str, spec: ThemeMerge, fix: CorrectionDep) -> IdeasView:
    """The facilitator merges a theme into another (`into`): its ideas move there and it is
    deleted; the other keeps its id, number and label."""
    ctx = fix.ctx
    return fix.apply(
        lambda language: corrections.merge_themes(
            fix.db, fix.keys, ctx.user, ctx.session, language, theme_id, spec.into
        )
    )
