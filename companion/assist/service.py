"""Assistance over a session's stored content: what each feature reads, and the checks before."""

from __future__ import annotations

from sqlalchemy.orm import Session

from companion.assist import clarity, contract
from companion.errors import Conflict
from companion.llm.gateway import LLMGateway
from companion.method.phases import Language, Phase
from companion.sessions import content
from companion.sessions.service import require_open, state
from companion.speech import jobs
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group


def utterances(
    db: Session, keys: Keyring, session: CodevSession, phase: Phase
) -> list[clarity.Utterance]:
    """The texts of a phase: typed notes, then the (possibly corrected) transcript segments,
    attributed to whoever recorded them until speakers are labelled."""
    found = [
        clarity.Utterance(source_id=n.id, author_id=n.author.user_id, text=n.body)
        for n in content.notes(db, keys, session, phase)
    ]
    recorded_by = {job.id: job.uploaded_by or "" for job in jobs.jobs_of(db, session)}
    found += [
        clarity.Utterance(source_id=s.id, author_id=recorded_by.get(s.job_id, ""), text=s.text)
        for s in jobs.transcript(db, keys, session, phase).segments
    ]
    return found


def clarity_prompts(
    db: Session, keys: Keyring, group: Group, session: CodevSession
) -> clarity.ClarityView:
    language = Language(group.language)
    view = clarity.analyse(
        utterances(db, keys, session, Phase.presentation),
        utterances(db, keys, session, Phase.clarification),
        language,
    )
    if state(session).running is Phase.consultation:
        spoke = [
            u
            for u in utterances(db, keys, session, Phase.consultation)
            if u.author_id == session.client_id
        ]
        if spoke:
            view.alerts.append(Phase.consultation.info.reminder[language])
    return view


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
    return contract.draft(
        gateway,
        group,
        Language(group.language),
        [u.text for u in exposé],
        [u.text for u in questions],
        client_texts,
    )
