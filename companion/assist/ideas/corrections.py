"""The facilitator's corrections of the grouping: move an idea, rename a theme, merge two.

Sentence embeddings group ideas by topic, which is often not how the group sees them (adjusted
Rand index about 0.1 on labelled consultations), so the facilitator fixes the themes from
phase 4 on, until the session closes. Later ideas follow the corrections with no rule of their
own: the grouping places a new idea by the stored ideas of each theme, wherever they now are.
Ideas keep their ids, refs and texts; a theme left empty is deleted; a person's label is never
replaced (companion/assist/ideas/service.py). The caller (companion/assist/ideas/flows.py) holds
`service.session_lock`, has refreshed the ideas under it, and commits under it, so a background
refresh cannot interleave.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.assist.ideas import service
from companion.assist.ideas.schemas import LabelSource
from companion.audit import service as audit
from companion.errors import Invalid
from companion.method.phases import Language
from companion.sessions.service import get_in_session, require_open
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Idea, Theme, User, new_id


def require_correctable(session: CodevSession) -> None:
    require_open(session)
    service.require_consultation(session)


def _idea(db: Session, session: CodevSession, idea_id: str) -> Idea:
    missing = f"No idea with id {idea_id} in this session; GET …/ideas lists them."
    return get_in_session(db, Idea, idea_id, session, missing=missing)


def _theme(db: Session, session: CodevSession, theme_id: str) -> Theme:
    missing = f"No theme with id {theme_id} in this session; GET …/ideas lists them."
    return get_in_session(db, Theme, theme_id, session, missing=missing)


def _settle(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    language: Language,
    embed: service.Embed,
    touched: list[str],
) -> None:
    """Drop the emptied themes, relabel with key words what changed, and have the touched and
    dropped themes indexed again (at the group's next memory use: the commit is under the
    session's lock and must not wait on embeddings)."""
    db.flush()
    dropped = service.drop_empty(db, session.id)
    service.label_with_words(db, keys, session, language, embed)
    kept = [t for t in dict.fromkeys(touched) if t not in dropped]
    service.remember_themes(db, session, kept, list(dict.fromkeys(dropped)))


def move_idea(
    db: Session,
    keys: Keyring,
    *,
    actor: User,
    session: CodevSession,
    language: Language,
    embed: service.Embed,
    idea_id: str,
    theme_id: str | None,
) -> bool:
    """Put an idea into another theme of the session, or (`theme_id` None) into a new theme
    numbered after the others; False when it is there already."""
    idea = _idea(db, session, idea_id)
    was = idea.theme_id
    if theme_id is None:
        alone = db.scalar(select(func.count()).where(Idea.theme_id == was)) == 1
        if alone:
            return False
        number = db.scalar(select(func.max(Theme.number)).where(Theme.session_id == session.id))
        target = Theme(id=new_id(), session_id=session.id, number=(number or 0) + 1)
        db.add(target)
        db.flush()  # before the idea points at it: no relationship() orders the flush
    else:
        target = _theme(db, session, theme_id)
        if target.id == was:
            return False
    idea.theme_id = target.id
    _settle(db, keys, session, language, embed, [was, target.id])
    audit.record(db, actor.id, session.group_id, "idea.move", "idea", idea.id)
    return True


def rename_theme(
    db: Session, keys: Keyring, *, actor: User, session: CodevSession, theme_id: str, label: str
) -> bool:
    """The facilitator's name for a theme, kept whatever ideas join or leave it."""
    theme = _theme(db, session, theme_id)
    members = db.scalars(select(Idea.id).where(Idea.theme_id == theme.id)).all()
    keys.seal(session.group_id, theme, "label", label)
    theme.label_source = LabelSource.edited
    theme.label_basis = service.basis_of_ids(members)  # what it named; not a reason to remake
    db.flush()
    service.remember_themes(db, session, [theme.id])
    audit.record(db, actor.id, session.group_id, "theme.rename", "theme", theme.id)
    return True


def merge_themes(
    db: Session,
    keys: Keyring,
    *,
    actor: User,
    session: CodevSession,
    language: Language,
    embed: service.Embed,
    theme_id: str,
    into: str,
) -> bool:
    """Move every idea of `theme_id` into `into`, which keeps its id, number and label (a key
    words label follows its ideas, as always); the merged theme is deleted."""
    if theme_id == into:
        raise Invalid("A theme cannot be merged into itself; send another theme's id in 'into'.")
    merged = _theme(db, session, theme_id)
    target = _theme(db, session, into)
    for idea in db.scalars(select(Idea).where(Idea.theme_id == merged.id)):
        idea.theme_id = target.id
    _settle(db, keys, session, language, embed, [target.id, merged.id])
    audit.record(db, actor.id, session.group_id, "theme.merge", "theme", merged.id)
    return True
