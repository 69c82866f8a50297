"""Sessions and their phases. The phase rules live in companion.method.machine."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.service import name_of
from companion.audit import service as audit
from companion.cycles import service as cycles
from companion.errors import Conflict, Invalid, NotFound
from companion.groups import service as groups
from companion.groups.schemas import Role
from companion.method import rotation
from companion.method.machine import IllegalTransition, PhaseState
from companion.method.phases import PHASES, Language, Phase
from companion.sessions.schemas import (
    CurrentPhase,
    Person,
    PhaseStatus,
    PhaseView,
    SessionCreate,
    SessionStatus,
    SessionView,
)
from companion.store.keyring import Keyring
from companion.store.models import (
    CodevSession,
    Group,
    Participant,
    PhaseRun,
    User,
    new_id,
    utcnow,
)


class ClosedSession(Conflict):
    def __init__(self) -> None:
        super().__init__("This session is closed and read-only.")


def state(session: CodevSession) -> PhaseState:
    return PhaseState(session.completed, Phase(session.running) if session.running else None)


def status(session: CodevSession) -> SessionStatus:
    st = state(session)
    if st.closed:
        return SessionStatus.closed
    return SessionStatus.running if st.started else SessionStatus.planned


def get_session(db: Session, group: Group, session_id: str, *, lock: bool = False) -> CodevSession:
    query = select(CodevSession).where(CodevSession.id == session_id)
    if lock:  # and re-read: the row the access check loaded may be stale by now
        query = query.with_for_update().execution_options(populate_existing=True)
    session = db.scalar(query)
    if session is None or session.group_id != group.id:
        raise NotFound(f"No session with id {session_id} in this group.")
    return session


class _InSession(Protocol):
    @property
    def session_id(self) -> str: ...


Row = TypeVar("Row", bound=_InSession)


def get_in_session(
    db: Session, model: type[Row], row_id: str, session: CodevSession, *, missing: str
) -> Row:
    """The row of `model` with this id if it belongs to this session; otherwise NotFound with
    `missing` (which says how to find the right id), so ids of another session read as unknown.
    """
    row = db.get(model, row_id)
    if row is None or row.session_id != session.id:
        raise NotFound(missing)
    return row


def participants(db: Session, session: CodevSession) -> dict[str, str]:
    """user id -> role in the session (client, consultant, facilitator)."""
    rows = db.execute(
        select(Participant.user_id, Participant.role).where(Participant.session_id == session.id)
    ).all()
    return {user_id: role for user_id, role in rows}  # noqa: C416 (rows are Row objects)


def person(db: Session, keys: Keyring, user_id: str) -> Person:
    return Person(user_id=user_id, name=name_of(db, keys, user_id))


def create_session(
    db: Session, keys: Keyring, actor: User, group: Group, spec: SessionCreate
) -> CodevSession:
    cycle = (
        cycles.get_cycle(db, group, spec.cycle_id)
        if spec.cycle_id
        else cycles.open_cycle(db, group)
    )
    if cycle is None:
        raise Conflict("The group has no open cycle; start a cycle first (POST .../cycles).")
    if cycle.closed_at is not None:
        raise Conflict(f"Cycle {cycle.number} is closed; sessions go into an open cycle.")
    members = cycles.member_ids(db, group)
    if spec.client_id not in members:
        raise Invalid(f"The client {spec.client_id} must be a member (role 'member') of the group.")
    consultant_ids = (
        [m for m in members if m != spec.client_id]
        if spec.consultant_ids is None
        else list(dict.fromkeys(spec.consultant_ids))
    )
    strangers = [c for c in consultant_ids if c not in members]
    if strangers:
        raise Invalid(f"Consultants must be members of the group: not {', '.join(strangers)}.")
    if spec.client_id in consultant_ids:
        raise Invalid("The client cannot also be a consultant in the same session.")
    try:
        overridden = rotation.check_client_turn(
            spec.client_id, cycles.past_clients(db, cycle), spec.override_reason
        )
    except rotation.SecondClientTurn as exc:
        raise Conflict(str(exc)) from exc

    session = CodevSession(
        id=new_id(),
        group_id=group.id,
        cycle_id=cycle.id,
        client_id=spec.client_id,
        facilitator_id=actor.id,
    )
    if overridden and spec.override_reason:
        keys.seal(group.id, session, "override_reason", spec.override_reason)
    db.add(session)
    db.flush()
    roles = {actor.id: "facilitator", spec.client_id: "client"}
    roles.update(dict.fromkeys(consultant_ids, "consultant"))
    for user_id, role in roles.items():
        db.add(Participant(id=new_id(), session_id=session.id, user_id=user_id, role=role))
    audit.record(db, actor.id, group.id, "session.create", "session", session.id)
    if overridden:
        audit.record(db, actor.id, group.id, "rotation.override", "session", session.id)
    return session


def move(
    db: Session, actor: User, group: Group, session_id: str, phase: Phase, *, start: bool
) -> CodevSession:
    """Start or end `phase`, with the session's row locked for the rest of the transaction."""
    session = get_session(db, group, session_id, lock=True)
    _move(db, actor, session, phase, start=start)
    return session


def _move(db: Session, actor: User, session: CodevSession, phase: Phase, *, start: bool) -> None:
    current = state(session)
    try:
        after = current.start(phase) if start else current.end(phase)
    except IllegalTransition as exc:
        raise Conflict(str(exc)) from exc
    now = utcnow()
    if start:
        db.add(PhaseRun(id=new_id(), session_id=session.id, phase=phase, started_at=now))
    else:
        run = db.scalar(
            select(PhaseRun).where(PhaseRun.session_id == session.id, PhaseRun.phase == phase)
        )
        if run is None:  # the state says it runs, so its row exists; refuse rather than guess
            raise Conflict(f"Phase '{phase}' has no start record; the session needs repair.")
        run.ended_at = now
    session.completed, session.running = after.completed, after.running
    if after.closed:
        session.closed_at = now
    verb = "start" if start else "end"
    audit.record(db, actor.id, session.group_id, f"phase.{verb}", "session", session.id)
    if after.closed:
        audit.record(db, actor.id, session.group_id, "session.close", "session", session.id)


def _phase_view(
    phase: Phase, run: PhaseRun | None, minutes: int, language: Language, now: datetime
) -> PhaseView:
    started = run.started_at if run else None
    ended = run.ended_at if run else None
    elapsed = int(((ended or now) - started).total_seconds()) if started else 0
    return PhaseView(
        phase=phase,
        number=phase.number,
        title=phase.info.title[language],
        status=PhaseStatus.pending
        if not run
        else PhaseStatus.done
        if ended
        else PhaseStatus.running,
        started_at=started,
        ended_at=ended,
        elapsed_seconds=elapsed,
        timebox_minutes=minutes,
        overrun=elapsed > minutes * 60,
    )


def view(db: Session, keys: Keyring, group: Group, session: CodevSession) -> SessionView:
    language = Language(group.language)
    boxes = groups.timeboxes(group)
    runs = {
        Phase(r.phase): r
        for r in db.scalars(select(PhaseRun).where(PhaseRun.session_id == session.id))
    }
    now = utcnow()
    phases = [_phase_view(p, runs.get(p), boxes[p], language, now) for p in PHASES]
    st = state(session)
    current = None
    if st.running is not None:
        pv = phases[st.running.number - 1]
        current = CurrentPhase(**pv.model_dump(), reminder=st.running.info.reminder[language])
    roles = participants(db, session)
    override = (
        keys.open(group.id, session, "override_reason") if session.override_reason_sealed else None
    )
    return SessionView(
        id=session.id,
        group_id=group.id,
        cycle_id=session.cycle_id,
        status=status(session),
        client=person(db, keys, session.client_id),
        facilitator=person(db, keys, session.facilitator_id),
        consultants=[person(db, keys, u) for u, r in roles.items() if r == "consultant"],
        override_reason=override,
        current_phase=current,
        next_phase=st.next_phase,
        allowed_moves=[f"{m} {p}" for m, p in st.allowed_moves()],
        phases=phases,
        created_at=session.created_at,
        closed_at=session.closed_at,
    )


def sessions_of(db: Session, group: Group) -> list[CodevSession]:
    return list(
        db.scalars(
            select(CodevSession)
            .where(CodevSession.group_id == group.id)
            .order_by(CodevSession.created_at, CodevSession.id)
        )
    )


def require_open(session: CodevSession) -> None:
    if session.closed_at is not None or state(session).closed:
        raise ClosedSession()


def require_running(session: CodevSession, phase: Phase | None = None) -> Phase:
    """The running phase (which must be `phase` when one is given)."""
    require_open(session)
    running = state(session).running
    if running is None:
        raise Conflict(f"No phase is running: {state(session).describe()}. Start a phase first.")
    if phase is not None and running != phase:
        raise Conflict(f"This is recorded during phase '{phase}'; phase '{running}' is running.")
    return running


def is_facilitator(db: Session, group: Group, user: User) -> bool:
    member = groups.membership(db, group.id, user.id)
    return member is not None and member.role == Role.facilitator
