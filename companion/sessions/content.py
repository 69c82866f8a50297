"""What a text-only session produces: notes, the contract, the action plan, learnings.

Every free text is sealed with the group's key; only ids, phases, dates and statuses are clear.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.audit import service as audit
from companion.errors import Conflict, Invalid, NotFound
from companion.method.contract import one_sentence_problem
from companion.method.phases import Phase
from companion.sessions.schemas import (
    ActionCreate,
    ActionPlanView,
    ActionStatus,
    ActionUpdate,
    ActionView,
    ContractView,
    LearningSet,
    LearningsView,
    LearningView,
    NoteView,
    ProgressCreate,
    ProgressView,
)
from companion.sessions.service import (
    get_in_session,
    person,
    require_open,
    require_running,
    state,
)
from companion.store import outbox as memory
from companion.store.keyring import Keyring
from companion.store.models import (
    Action,
    ActionProgress,
    CodevSession,
    Contract,
    Learning,
    Note,
    User,
    new_id,
    utcnow,
)

# --- notes ---------------------------------------------------------------------------------


def add_note(db: Session, keys: Keyring, actor: User, session: CodevSession, body: str) -> Note:
    phase = require_running(session)
    note = Note(id=new_id(), session_id=session.id, phase=phase, author_id=actor.id)
    keys.seal(session.group_id, note, "body", body)
    db.add(note)
    db.flush()
    audit.record(db, actor.id, session.group_id, "note.add", "note", note.id)
    memory.enqueue(db, session.group_id, "note", note.id)
    return note


def notes(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    phase: Phase | None = None,
    only: Collection[str] | None = None,
) -> list[NoteView]:
    """The notes (of `phase`; those of `only`, when given) in the order they were added."""
    query = select(Note).where(Note.session_id == session.id)
    if phase is not None:
        query = query.where(Note.phase == phase)
    if only is not None:
        query = query.where(Note.id.in_(only))
    rows = db.scalars(query.order_by(Note.created_at, Note.id)).all()
    return [note_view(db, keys, session, n) for n in rows]


def note_ids(db: Session, session: CodevSession, phase: Phase) -> list[str]:
    return list(
        db.scalars(select(Note.id).where(Note.session_id == session.id, Note.phase == phase))
    )


def notes_digest(db: Session, session: CodevSession, phase: Phase | None) -> str:
    """A fingerprint of the notes of `phase` (notes are added and deleted, never edited)."""
    found = db.execute(
        select(func.count(), func.max(Note.created_at)).where(
            Note.session_id == session.id, Note.phase == phase
        )
    ).one()
    return f"{found[0]}|{found[1].isoformat() if found[1] else '-'}"


def note_view(db: Session, keys: Keyring, session: CodevSession, note: Note) -> NoteView:
    return NoteView(
        id=note.id,
        phase=Phase(note.phase),
        author=person(db, keys, note.author_id),
        body=keys.open(session.group_id, note, "body"),
        created_at=note.created_at,
    )


# --- contract ------------------------------------------------------------------------------


def set_contract(
    db: Session, keys: Keyring, actor: User, session: CodevSession, text: str
) -> Contract:
    require_open(session)
    if not state(session).has_reached(Phase.contract):
        raise Conflict("The contract is recorded from the contract phase on; start it first.")
    problem = one_sentence_problem(text)
    if problem:
        raise Invalid(problem)
    contract = db.scalar(select(Contract).where(Contract.session_id == session.id))
    if contract is None:
        contract = Contract(id=new_id(), session_id=session.id)
        db.add(contract)
    contract.confirmed_by = actor.id
    contract.confirmed_at = utcnow()
    keys.seal(session.group_id, contract, "text", text)
    db.flush()
    audit.record(db, actor.id, session.group_id, "contract.confirm", "contract", contract.id)
    memory.enqueue(db, session.group_id, "contract", contract.id)
    return contract


def contract(db: Session, keys: Keyring, session: CodevSession) -> ContractView:
    row = db.scalar(select(Contract).where(Contract.session_id == session.id))
    if row is None:
        raise NotFound("The client has not confirmed a contract for this session yet.")
    return ContractView(
        text=keys.open(session.group_id, row, "text"),
        confirmed_by=person(db, keys, row.confirmed_by),
        confirmed_at=row.confirmed_at,
    )


# --- action plan ---------------------------------------------------------------------------

_ACTION_TEXT = ("objective", "first_step", "indicator")  # resources: optional, apart


def add_action(
    db: Session, keys: Keyring, actor: User, session: CodevSession, spec: ActionCreate
) -> Action:
    require_open(session)
    if not state(session).has_reached(Phase.synthesis):
        raise Conflict("Actions are planned from the synthesis phase on; start it first.")
    action = Action(id=new_id(), session_id=session.id, due_date=spec.due_date, status="open")
    for field in _ACTION_TEXT:
        keys.seal(session.group_id, action, field, getattr(spec, field))
    if spec.resources:
        keys.seal(session.group_id, action, "resources", spec.resources)
    db.add(action)
    db.flush()
    audit.record(db, actor.id, session.group_id, "action.add", "action", action.id)
    memory.enqueue(db, session.group_id, "action", action.id)
    return action


def get_action(db: Session, session: CodevSession, action_id: str) -> Action:
    missing = f"No action with id {action_id} in this session's plan."
    return get_in_session(db, Action, action_id, session, missing=missing)


def update_action(
    db: Session,
    keys: Keyring,
    *,
    actor: User,
    session: CodevSession,
    action: Action,
    spec: ActionUpdate,
) -> Action:
    """Follow-up goes on after the session closes: status, dates and wording stay editable."""
    changes = spec.model_dump(exclude_unset=True)
    for field in (*_ACTION_TEXT, "resources"):
        value = changes.get(field)
        if value is not None:
            keys.seal(session.group_id, action, field, value)
    if changes.get("due_date") is not None:
        action.due_date = changes["due_date"]
    if changes.get("status") is not None:
        action.status = changes["status"]
    action.updated_at = utcnow()
    audit.record(db, actor.id, session.group_id, "action.update", "action", action.id)
    memory.enqueue(db, session.group_id, "action", action.id)
    return action


def add_progress(
    db: Session,
    keys: Keyring,
    *,
    actor: User,
    session: CodevSession,
    action: Action,
    spec: ProgressCreate,
) -> ActionProgress:
    noted_on = spec.noted_on or date.today()
    if noted_on > date.today():
        raise Invalid(f"A progress note cannot be dated in the future ({noted_on}).")
    progress = ActionProgress(
        id=new_id(), action_id=action.id, author_id=actor.id, noted_on=noted_on
    )
    keys.seal(session.group_id, progress, "note", spec.note)
    db.add(progress)
    action.updated_at = utcnow()
    db.flush()
    audit.record(db, actor.id, session.group_id, "action.progress", "action", action.id)
    memory.enqueue(db, session.group_id, "action", action.id)
    return progress


def action_view(db: Session, keys: Keyring, session: CodevSession, action: Action) -> ActionView:
    scope = session.group_id
    steps = db.scalars(
        select(ActionProgress)
        .where(ActionProgress.action_id == action.id)
        .order_by(ActionProgress.noted_on, ActionProgress.created_at)
    ).all()
    return ActionView(
        id=action.id,
        session_id=session.id,
        objective=keys.open(scope, action, "objective"),
        first_step=keys.open(scope, action, "first_step"),
        indicator=keys.open(scope, action, "indicator"),
        resources=keys.open(scope, action, "resources") if action.resources_sealed else None,
        due_date=action.due_date,
        status=ActionStatus(action.status),
        overdue=action.status == ActionStatus.open and action.due_date < date.today(),
        progress=[
            ProgressView(
                id=p.id,
                note=keys.open(scope, p, "note"),
                noted_on=p.noted_on,
                author=person(db, keys, p.author_id),
            )
            for p in steps
        ],
        created_at=action.created_at,
        updated_at=action.updated_at,
    )


def action_plan(db: Session, keys: Keyring, session: CodevSession) -> ActionPlanView:
    rows = db.scalars(
        select(Action).where(Action.session_id == session.id).order_by(Action.created_at, Action.id)
    ).all()
    return ActionPlanView(
        session_id=session.id,
        client=person(db, keys, session.client_id),
        actions=[action_view(db, keys, session, a) for a in rows],
    )


# --- learnings -----------------------------------------------------------------------------


def set_learning(
    db: Session, keys: Keyring, actor: User, session: CodevSession, spec: LearningSet
) -> Learning:
    require_running(session, Phase.learning)
    row = db.scalar(
        select(Learning).where(Learning.session_id == session.id, Learning.user_id == actor.id)
    )
    if row is None:
        row = Learning(id=new_id(), session_id=session.id, user_id=actor.id)
        db.add(row)
    row.rating = spec.rating
    row.created_at = utcnow()
    keys.seal(session.group_id, row, "text", spec.text)
    db.flush()
    audit.record(db, actor.id, session.group_id, "learning.set", "learning", row.id)
    memory.enqueue(db, session.group_id, "learning", row.id)
    return row


def learnings(db: Session, keys: Keyring, session: CodevSession) -> LearningsView:
    rows = db.scalars(
        select(Learning).where(Learning.session_id == session.id).order_by(Learning.created_at)
    ).all()
    views = [
        LearningView(
            author=person(db, keys, r.user_id),
            text=keys.open(session.group_id, r, "text"),
            rating=r.rating,
            created_at=r.created_at,
        )
        for r in rows
    ]
    average = round(sum(v.rating for v in views) / len(views), 2) if views else None
    return LearningsView(learnings=views, average_rating=average)
