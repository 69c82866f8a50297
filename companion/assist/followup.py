"""Groups revisit past action plans: at the start of a session the group hears how the previous
clients' plans went, and the facilitator opens with the previous session's regulation points.
Also the plan's due dates as an iCalendar file."""

from __future__ import annotations

from datetime import UTC, date, datetime

from icalendar import STATUS, Calendar, Event
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.assist import regulation
from companion.errors import NotFound
from companion.sessions import content
from companion.sessions import service as sessions_service
from companion.sessions.schemas import ActionView, Person
from companion.sessions.service import person
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Contract, Group, Learning


class PlanFollowUp(BaseModel):
    session_id: str
    session_date: datetime
    client: Person
    contract: str | None
    first_thing: str | None  # what the client said, in phase 6, they would do first
    actions: list[ActionView]
    open: int
    done: int
    dropped: int
    overdue: int


class PreviousRegulation(BaseModel):
    """The last ended session of the group: what it said to keep and to change."""

    session_id: str
    session_date: datetime
    closed_at: datetime
    summarised: bool  # False: no regulation points were made for it (`points` is empty)
    edited: bool
    points: list[regulation.RegulationPoint]
    overruns: list[regulation.Overrun]
    average_rating: float | None
    answers: int


class FollowUp(BaseModel):
    plans: list[PlanFollowUp]
    overdue: list[ActionView]
    regulation: PreviousRegulation | None  # None before the group's first session has ended


def _contract_text(db: Session, keys: Keyring, session: CodevSession) -> str | None:
    row = db.scalar(select(Contract).where(Contract.session_id == session.id))
    return keys.open(session.group_id, row, "text") if row else None


def _client_learning(db: Session, keys: Keyring, session: CodevSession) -> str | None:
    row = db.scalar(
        select(Learning).where(
            Learning.session_id == session.id, Learning.user_id == session.client_id
        )
    )
    return keys.open(session.group_id, row, "text") if row else None


def previous_regulation(db: Session, keys: Keyring, group: Group) -> PreviousRegulation | None:
    """The regulation of the group's most recently ended session (this group's only)."""
    session = db.scalar(
        select(CodevSession)
        .where(CodevSession.group_id == group.id, CodevSession.closed_at.is_not(None))
        .order_by(CodevSession.closed_at.desc(), CodevSession.id)
        .limit(1)
    )
    if session is None or session.closed_at is None:
        return None
    found = content.learnings(db, keys, session)
    summary = regulation.summary_view(db, keys, session, found)
    view = sessions_service.view(db, keys, group, session)
    return PreviousRegulation(
        session_id=session.id,
        session_date=session.created_at,
        closed_at=session.closed_at,
        summarised=summary is not None,
        edited=summary.edited if summary else False,
        points=summary.points if summary else [],
        overruns=regulation.overruns(view),
        average_rating=found.average_rating,
        answers=len(found.learnings),
    )


def follow_up(db: Session, keys: Keyring, group: Group) -> FollowUp:
    """Every past session that produced an action plan, newest first, with its overdue actions."""
    sessions = db.scalars(
        select(CodevSession)
        .where(CodevSession.group_id == group.id)
        .order_by(CodevSession.created_at.desc(), CodevSession.id)
    ).all()
    plans: list[PlanFollowUp] = []
    for session in sessions:
        actions = content.action_plan(db, keys, session).actions
        if not actions:
            continue
        plans.append(
            PlanFollowUp(
                session_id=session.id,
                session_date=session.created_at,
                client=person(db, keys, session.client_id),
                contract=_contract_text(db, keys, session),
                first_thing=_client_learning(db, keys, session),
                actions=actions,
                open=sum(a.status == "open" for a in actions),
                done=sum(a.status == "done" for a in actions),
                dropped=sum(a.status == "dropped" for a in actions),
                overdue=sum(a.overdue for a in actions),
            )
        )
    overdue = sorted(
        (a for p in plans for a in p.actions if a.overdue), key=lambda a: (a.due_date, a.id)
    )
    return FollowUp(plans=plans, overdue=overdue, regulation=previous_regulation(db, keys, group))


def action_plan_ics(db: Session, keys: Keyring, session: CodevSession) -> str:
    """One all-day event per action, on its due date (the icalendar package escapes and folds
    the text as RFC 5545 says)."""
    plan = content.action_plan(db, keys, session)
    if not plan.actions:
        raise NotFound("This session's action plan has no actions yet.")
    stamp = datetime.now(UTC).replace(microsecond=0)
    calendar = Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", "-//Codev Companion//Action plan//FR")
    calendar.add("calscale", "GREGORIAN")
    for action in plan.actions:
        due: date = action.due_date
        calendar.add_component(
            Event.new(
                uid=f"{action.id}@codev-companion",
                stamp=stamp,
                start=due,
                summary=action.objective,
                description=f"{action.first_step} — {action.indicator}",
                status=STATUS.CANCELLED if action.status == "dropped" else STATUS.CONFIRMED,
            )
        )
    ical: bytes = calendar.to_ical()
    return ical.decode()
