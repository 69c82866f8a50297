"""Assistance over a session's stored content: what each feature reads, and the checks before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from companion.assist import clarity, clarity_review, contract
from companion.assist.phase_texts import texts_of
from companion.errors import Conflict
from companion.llm.gateway import LLMGateway
from companion.method.phases import Language, Phase
from companion.sessions.service import require_open, state
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group


def utterances(
    db: Session, keys: Keyring, session: CodevSession, phase: Phase
) -> list[clarity.Utterance]:
    """The texts of a phase, a segment attributed to whoever recorded it until speakers are
    labelled."""
    return [
        clarity.Utterance(
            source_id=t.id,
            author_id=t.author_id or "",
            text=t.text,
            # A note or a live stream is its author's; an uploaded recording is of the room.
            client=(not t.segment or t.live) and t.author_id == session.client_id,
        )
        for t in texts_of(db, keys, session, phase)
    ]


def clarity_prompts(
    db: Session, keys: Keyring, group: Group, session: CodevSession, *, model_configured: bool
) -> clarity.ClarityView:
    """Cue flags at once; the model's reviews where stored, the '?' rule for the rest."""
    language = Language(group.language)
    questions = utterances(db, keys, session, Phase.clarification)
    found = clarity_review.lookup(db, keys, session, clarity.undecided(questions, language))
    view = clarity.analyse(
        utterances(db, keys, session, Phase.presentation),
        questions,
        language,
        reviewed=found.reviewed,
    )
    view.pending = len(found.pending)
    view.review_error = clarity_review.view_error(found, model_configured)
    if state(session).running is Phase.consultation:
        spoke = [
            u
            for u in utterances(db, keys, session, Phase.consultation)
            if u.author_id == session.client_id
        ]
        if spoke:
            view.alerts.append(Phase.consultation.info.reminder[language])
    return view


def review_clarity(
    db: Session,
    keys: Keyring,
    llm: Callable[[], LLMGateway],
    group: Group,
    session: CodevSession,
    *,
    retry_after: timedelta | None = None,
    wait: bool = True,
) -> int:
    """Have the model review the questions no cue decided and no review covers yet; with
    `retry_after`, leave out those that failed less than that ago. Returns how many were
    reviewed (0 when another review of the session is under way and `wait` is False).
    Commits; raises the model's errors after storing them."""
    language = Language(group.language)
    lock = clarity_review.review_lock(session.id)
    if not lock.acquire(blocking=wait):
        return 0
    try:
        questions = clarity.undecided(utterances(db, keys, session, Phase.clarification), language)
        todo = clarity_review.due(db, keys, session, questions, retry_after)
        if not todo:
            return 0
        exposé = [u.text for u in utterances(db, keys, session, Phase.presentation)]
        return clarity_review.run(
            db,
            keys,
            llm=llm,
            group=group,
            session=session,
            language=language,
            exposé=exposé,
            questions=todo,
        )
    finally:
        lock.release()


def contract_drafts(
    db: Session, keys: Keyring, gateway: LLMGateway, group: Group, session: CodevSession
) -> contract.ContractDrafts:
    require_open(session)
    if not state(session).has_reached(Phase.clarification):
        raise Conflict(
            "Contract drafts need the exposé and the clarification: start phase 2 first."
        )
    exposé = utterances(db, keys, session, Phase.presentation)
    questions = utterances(db, keys, session, Phase.clarification)
    if not exposé and not questions:
        raise Conflict(
            "There is nothing to draft from yet: add notes (or recordings) to the exposé and "
            "the clarification first."
        )
    client_texts = [u.text for u in [*exposé, *questions] if u.author_id == session.client_id]
    advice = []  # what the disguised-advice questions propose, their cue taken out
    for flag in clarity_prompts(db, keys, group, session, model_configured=True).questions:
        if flag.kind is clarity.Kind.disguised_advice:
            advice.append(flag.text.replace(flag.cue, " ") if flag.cue else flag.text)
    return contract.draft(
        gateway,
        group,
        language=Language(group.language),
        exposé=[u.text for u in exposé],
        clarification=[u.text for u in questions],
        client_texts=client_texts,
        advice=advice,
    )
