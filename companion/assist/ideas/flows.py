"""What a request does with a session's ideas: bring them up to date, and apply a facilitator's
correction, each under the session's lock as the background runner works (service.session_lock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from companion.assist.ideas import corrections, service
from companion.assist.ideas.schemas import IdeasView
from companion.assist.ideas.service import Embed
from companion.method.phases import Language
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, User


def current(
    db: Session, keys: Keyring, session: CodevSession, language: Language, embed: Embed
) -> IdeasView:
    """The ideas once phase 4 has started, brought up to date with what was said."""
    service.require_consultation(session)
    service.bring_up_to_date(db, keys, session, language, embed)
    return service.view(db, keys, session)


def stored(db: Session, keys: Keyring, session: CodevSession) -> tuple[str, IdeasView]:
    """The ideas as the last refresh left them (the background runner keeps them current,
    and open pages reload when it stores a change), with a digest of what they show."""
    service.require_consultation(session)
    return service.keyed_view(db, keys, session)


@dataclass(frozen=True)
class Corrected:
    ideas: IdeasView
    # The grouping changed: the draft synthesis and the model's labels are to be redone.
    changed: bool


def _correct(
    db: Session,
    keys: Keyring,
    *,
    session: CodevSession,
    language: Language,
    embed: Embed,
    fix: Callable[[], bool],
) -> Corrected:
    """Bring the ideas up to date, then apply `fix`, all under the session's lock."""
    corrections.require_correctable(session)
    with service.session_lock(session.id):
        service.refresh(db, keys, session, language, embed)
        db.commit()  # the ideas brought up to date stand, whatever the correction finds
        try:
            changed = fix()
            db.commit()
        except BaseException:
            db.rollback()  # inside the lock: the runner never sees half a correction
            raise
    return Corrected(service.view(db, keys, session), changed)


def move_idea(
    db: Session,
    keys: Keyring,
    *,
    embed: Embed,
    actor: User,
    session: CodevSession,
    language: Language,
    idea_id: str,
    theme_id: str | None,
) -> Corrected:
    def fix() -> bool:
        return corrections.move_idea(
            db,
            keys,
            actor=actor,
            session=session,
            language=language,
            embed=embed,
            idea_id=idea_id,
            theme_id=theme_id,
        )

    return _correct(db, keys, session=session, language=language, embed=embed, fix=fix)


def rename_theme(
    db: Session,
    keys: Keyring,
    *,
    embed: Embed,
    actor: User,
    session: CodevSession,
    language: Language,
    theme_id: str,
    label: str,
) -> Corrected:
    def fix() -> bool:
        return corrections.rename_theme(
            db, keys, actor=actor, session=session, theme_id=theme_id, label=label
        )

    return _correct(db, keys, session=session, language=language, embed=embed, fix=fix)


def merge_themes(
    db: Session,
    keys: Keyring,
    *,
    embed: Embed,
    actor: User,
    session: CodevSession,
    language: Language,
    theme_id: str,
    into: str,
) -> Corrected:
    def fix() -> bool:
        return corrections.merge_themes(
            db,
            keys,
            actor=actor,
            session=session,
            language=language,
            embed=embed,
            theme_id=theme_id,
            into=into,
        )

    return _correct(db, keys, session=session, language=language, embed=embed, fix=fix)
