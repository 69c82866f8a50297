"""The client's draft synthesis as stored and shown: what the routes and the runner call.

A draft is stored sealed with the `basis` of the inputs it was made from; it is current while
that basis is the session's and its last run succeeded (`is_current`, the one rule the view,
the routes and the runner go by). A failed run keeps the last good body and says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

import numpy as np
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from companion.assist.ideas import labels
from companion.assist.ideas import service as ideas
from companion.assist.synthesis import drafting, inputs, plan, runs
from companion.assist.synthesis.inputs import Inputs
from companion.assist.synthesis.outline import relevance
from companion.assist.synthesis.schemas import DraftStatus, StoredDraft, SynthesisView
from companion.llm.errors import ModelError, ModelOutputInvalid
from companion.llm.gateway import GroupRef, LLMGateway
from companion.method.phases import Language, Phase
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group, Synthesis, new_id, utcnow
from companion.vault import MasterKey

log = logging.getLogger(__name__)


class Application(Protocol):
    """What a draft made in its own transaction needs of the running service (the API's
    application state has it all)."""

    sessions: sessionmaker[Session]
    master: MasterKey

    def llm(self) -> LLMGateway: ...

    def embed(self) -> ideas.Embed: ...

    def model_configured(self) -> bool: ...


# --- stored drafts ---------------------------------------------------------------------------


def stored(db: Session, session: CodevSession) -> Synthesis | None:
    return db.scalar(select(Synthesis).where(Synthesis.session_id == session.id))


def is_current(row: Synthesis | None, found: Inputs) -> bool:
    """Whether the stored draft was made from exactly `found` and its last run succeeded: then
    no run is wanted."""
    return row is not None and row.basis == found.basis and row.status == DraftStatus.ready


def store(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    basis: str,
    *,
    draft: StoredDraft | None = None,
    error: str | None = None,
    seconds: float | None = None,
    version: str | None = None,
) -> Synthesis:
    row = stored(db, session)
    if row is None:
        row = Synthesis(id=new_id(), session_id=session.id)
        db.add(row)
    row.basis = basis
    row.updated_at = utcnow()
    row.seconds = seconds
    row.prompt_version = version
    if draft is not None:
        row.status = DraftStatus.ready
        row.error = None
        keys.seal(session.group_id, row, "body", draft.model_dump_json())
    else:
        row.status = DraftStatus.failed
        row.error = (error or "failed")[:300]  # keeps the last good body, if any
    db.flush()
    return row


def _ready_draft(
    db: Session, keys: Keyring, session: CodevSession, version: str
) -> StoredDraft | None:
    """The stored draft, when the last run succeeded with the prompt files of `version`."""
    row = stored(db, session)
    if (
        row is None
        or row.status != DraftStatus.ready
        or row.body_sealed is None
        or row.prompt_version != version
    ):
        return None
    try:
        return StoredDraft.model_validate_json(keys.open(session.group_id, row, "body"))
    except ValidationError:
        return None


def fitting_labels(
    found: Inputs, draft: StoredDraft, vectors: Mapping[str, np.ndarray], embed: ideas.Embed
) -> dict[str, str]:
    """The draft's labels that are closer to their own theme's ideas than to any other's
    (`vectors`: every idea's, by id)."""
    if not draft.labels:
        return {}
    themes = {t.id: [vectors[i.id] for i in t.ideas if i.id in vectors] for t in found.ideas.themes}
    said = ideas.embedded(embed, list(draft.labels.values()))
    return labels.fitting(draft.labels, themes, said)


def plan_support(
    found: Inputs, vectors: Mapping[str, np.ndarray], embed: ideas.Embed
) -> plan.Support:
    """What the draft's actions are held to: the ideas' vectors and texts by ref, the contract."""
    return plan.Support(
        vectors={i.ref: vectors[i.id] for i in found.all_ideas if i.id in vectors},
        texts={i.ref: i.text for i in found.all_ideas},
        contract=found.contract or "",
        embed=lambda texts: ideas.embedded(embed, texts),
    )


def tried_labels(
    previous: StoredDraft | None, found: Inputs, asked: Mapping[str, str]
) -> dict[str, str]:
    """Every theme the model has now been asked to label, with its basis: those this run
    `asked` (drafting sets them in the draft's label_tried) and those asked before on the same
    ideas."""
    now = drafting.theme_basis(found)
    before = previous.label_tried if previous is not None else {}
    kept = {t: b for t, b in before.items() if now.get(t) == b}
    return {**kept, **asked}


def make_draft(
    db: Session,
    keys: Keyring,
    *,
    gateway: LLMGateway,
    group: GroupRef,
    session: CodevSession,
    found: Inputs,
    embed: ideas.Embed,
) -> Synthesis:
    """Run the model for `found` and store the result (or the failure, then re-raise); an
    update when `drafting.update_of` allows one, else the whole draft. Of the model's theme
    labels only those that fit their theme (ideas/labels.py) are kept."""
    version = inputs.prompt_version(found.language)
    started = time.monotonic()
    vectors = ideas.vectors(db, keys, session)  # opened once: the labels and the plan use them
    support = plan_support(found, vectors, embed)
    with runs.under_way(session.id) as progress:
        previous = _ready_draft(db, keys, session, version)
        ended = session.running != Phase.consultation.value
        new = drafting.update_of(previous, found, ended=ended)
        every = sorted(i.id for i in found.all_ideas)
        log.info(
            "Draft synthesis of session %s: %s of %d ideas (the last full run saw %d)%s",
            session.id,
            "an update" if new is not None else "a whole draft",
            len(every),
            len(previous.full_from) if previous is not None else 0,
            ", phase 4 has ended" if ended else "",
        )
        try:
            draft = None
            if previous is not None and new is not None:
                try:
                    draft = drafting.compose_update(
                        gateway,
                        group,
                        found=found,
                        previous=previous,
                        new=new,
                        today=utcnow().date(),
                        progress=progress,
                        support=support,
                    )
                    full_from = previous.full_from
                except ModelOutputInvalid:
                    new = None  # the addendum is unusable: the whole draft is made again
            if draft is None:
                draft = drafting.compose(
                    gateway,
                    group,
                    found,
                    utcnow().date(),
                    progress,
                    support=support,
                    tried=previous.label_tried if previous is not None else {},
                )
                full_from = every
            draft = draft.model_copy(
                update={
                    "labels": fitting_labels(found, draft, vectors, embed),
                    "label_tried": tried_labels(previous, found, draft.label_tried),
                    "made_from": every,
                    "full_from": full_from,
                    "contract_id": found.contract_id,
                }
            )
        except runs.DraftSuperseded:
            raise  # nothing stored: the next run covers every idea
        except ModelError as exc:
            store(db, keys, session, found.basis, error=str(exc), version=version)
            raise
    row = store(
        db,
        keys,
        session,
        found.basis,
        draft=draft,
        seconds=round(time.monotonic() - started, 2),
        version=version,
    )
    before = previous.labels if previous is not None and new is not None else {}
    for theme_id, label in draft.labels.items():
        if before.get(theme_id) == label:
            continue  # an update keeps the labels it was given: not made for today's ideas
        members = [i for t in found.ideas.themes if t.id == theme_id for i in t.ideas]
        ideas.set_label(
            db,
            keys,
            session=session,
            theme_id=theme_id,
            label=label,
            of=ideas.basis_of_ids([i.id for i in members]),
        )
    return row


# --- the view --------------------------------------------------------------------------------


def view(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    found: Inputs,
    embed: ideas.Embed,
    *,
    model_configured: bool,
) -> SynthesisView:
    themes, top = relevance(db, keys, session, found, embed)
    row = stored(db, session)
    draft: StoredDraft | None = None
    if row is not None and row.body_sealed is not None:
        try:
            draft = StoredDraft.model_validate_json(keys.open(session.group_id, row, "body"))
        except ValidationError:
            draft = None  # an older shape: made again by the next run
    if row is None:
        status = DraftStatus.pending if model_configured else DraftStatus.no_model
    else:
        status = DraftStatus(row.status)
    known = {i.id for i in found.all_ideas}
    refs = {i.id: i.ref for i in found.all_ideas}

    def recite(ids: list[str]) -> tuple[list[str], list[str]]:
        kept = [i for i in ids if i in known]  # an idea corrected away since is not cited
        return kept, [refs[i] for i in kept]

    questions, actions = [], []
    if draft is not None:
        for q in draft.questions:
            q.ideas, q.refs = recite(q.ideas)
            questions.append(q)
        for a in draft.actions:
            a.ideas, a.refs = recite(a.ideas)
            actions.append(a)
    return SynthesisView(
        session_id=session.id,
        contract=found.contract,
        themes=found.ideas.themes,
        relevance=themes,
        most_relevant=top,
        questions=questions,
        actions=actions,
        status=status,
        current=is_current(row, found),
        error=row.error if row is not None and row.status == DraftStatus.failed else None,
        prompt_version=row.prompt_version if row is not None else None,
        model_seconds=row.seconds if row is not None else None,
        updated_at=row.updated_at if row is not None else None,
    )


# --- what the routes call --------------------------------------------------------------------


def _refreshed(
    db: Session, keys: Keyring, session: CodevSession, language: Language, embed: ideas.Embed
) -> Inputs:
    """The inputs once the session's ideas are brought up to date (committed, so the runner
    reads them); Conflict outside phase 4 or without ideas."""
    ideas.require_consultation(session)
    ideas.bring_up_to_date(db, keys, session, language, embed)
    found = inputs.read(db, keys, session, language)
    inputs.require_ideas(found)
    return found


def current_view(
    app: Application, db: Session, keys: Keyring, session: CodevSession, language: Language
) -> SynthesisView:
    """The draft as it stands, its ideas brought up to date: the outline, and the model's part
    as last made (`current` says whether it covers every idea)."""
    embed = app.embed()
    found = _refreshed(db, keys, session, language, embed)
    return view(db, keys, session, found, embed, model_configured=app.model_configured())


def draft_now(app: Application, session_id: str) -> SynthesisView:
    """The whole draft, its model part made now unless a current one is stored; waits for a
    run under way (the runner's) rather than starting a second one. Its own transaction, so
    it can run outside the request's (the stream runs it in a thread)."""
    with app.sessions() as db:
        keys = Keyring(db, app.master)
        session = db.get(CodevSession, session_id)
        group = db.get(Group, session.group_id) if session is not None else None
        assert session is not None
        assert group is not None
        language = Language(group.language)
        embed = app.embed()
        with runs.compose_lock(session_id):
            found = inputs.read(db, keys, session, language)
            inputs.require_ideas(found)
            if not is_current(stored(db, session), found):
                try:
                    make_draft(
                        db,
                        keys,
                        gateway=app.llm(),
                        group=group,
                        session=session,
                        found=found,
                        embed=embed,
                    )
                finally:
                    db.commit()  # the failure is stored too: the client sees why
                found = inputs.read(db, keys, session, language)  # with the new labels
        return view(db, keys, session, found, embed, model_configured=app.model_configured())


def make_now(
    app: Application, db: Session, keys: Keyring, session: CodevSession, language: Language
) -> SynthesisView:
    """The session's ideas brought up to date (Conflict outside phase 4 or without ideas),
    then `draft_now`."""
    _refreshed(db, keys, session, language, app.embed())
    return draft_now(app, session.id)
