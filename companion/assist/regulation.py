"""The session's regulation points (phase 6), carried to the next session.

The model reads the participants' learnings (numbered, marked as data) and the facts measured
here (phases over their timebox, the average rating) and proposes 1-5 points, each "keep" or
"change", one sentence, citing the learnings it comes from. The citations are checked here,
without the model: unknown numbers are dropped, and so is a point that cites nothing. When
nothing is left the model is asked once more with the reasons; then the call fails (502) and
the stored summary, if any, stays as it was.

The points are sealed with the group's key, citing learnings by their author's id (a
participant has one learning per session, kept when they rewrite it), and shown with the
learnings' current numbers. A facilitator may rewrite the points; the summary is then marked
edited.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from langchain_core.prompts import PromptTemplate
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import prompts
from companion.audit import service as audit
from companion.errors import Conflict, Invalid
from companion.llm.errors import ModelOutputInvalid
from companion.llm.gateway import LLMGateway, Message
from companion.memory.schemas import MemoryKind
from companion.method.contract import sentences
from companion.method.phases import Language, Phase
from companion.prompts import data, prompt
from companion.sessions import content
from companion.sessions import service as sessions
from companion.sessions.schemas import LearningsView, Person, SessionView
from companion.store import outbox as memory
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group, RegulationSummary, User, new_id, utcnow
from companion.text import Integer, Name

PURPOSE = "regulation.summary"
MOST_POINTS = 5
MAX_POINT_CHARS = 200  # one sentence; the same bound as a facilitator's edit (Name)


class PointKind(StrEnum):
    keep = "keep"  # it helped: the group keeps it
    change = "change"  # to change in the next session


class Overrun(BaseModel):
    """A phase that went past its timebox, in whole minutes (rounded up)."""

    phase: Phase
    title: str
    timebox_minutes: int
    minutes: int
    minutes_over: int


def overruns(session: SessionView) -> list[Overrun]:
    found: list[Overrun] = []
    for p in session.phases:
        if not p.overrun:
            continue
        minutes = math.ceil(p.elapsed_seconds / 60)
        found.append(
            Overrun(
                phase=p.phase,
                title=p.title,
                timebox_minutes=p.timebox_minutes,
                minutes=minutes,
                minutes_over=max(1, minutes - p.timebox_minutes),
            )
        )
    return found


# --- what the model answers ---------------------------------------------------------------


class ModelPoint(BaseModel):
    kind: PointKind
    text: str = Field(min_length=1, max_length=1000)
    learnings: list[Integer] = Field(default_factory=list, max_length=50)


class ModelPoints(BaseModel):
    points: list[ModelPoint] = Field(min_length=1, max_length=10)


# --- what is sealed, and what is shown ----------------------------------------------------


class StoredPoint(BaseModel):
    kind: PointKind
    text: str
    authors: list[str]  # user ids of the cited learnings' authors


class StoredPoints(BaseModel):
    """What is sealed in regulation_summaries.body."""

    points: list[StoredPoint]


class RegulationPoint(BaseModel):
    kind: PointKind
    text: str
    learnings: list[Integer] = Field(
        description="The numbers of the learnings it comes from, in the order of GET …/learnings."
    )


class RegulationSummaryView(BaseModel):
    points: list[RegulationPoint]
    edited: bool = Field(description="True once a facilitator rewrote the points.")
    edited_by: Person | None
    current: bool = Field(
        description="False when a learning was added or rewritten after the summary was made."
    )
    prompt_version: str | None
    updated_at: datetime


class RejectedPoint(BaseModel):
    kind: PointKind
    text: str
    problems: list[str]


class SummaryMade(RegulationSummaryView):
    rejected: list[RejectedPoint] = Field(description="What the model proposed that failed.")


class PointSet(BaseModel):
    kind: PointKind
    text: Name
    learnings: list[Integer] = Field(
        default_factory=list,
        max_length=50,
        description="The numbers of the learnings it comes from (GET …/learnings order).",
    )


class PointsSet(BaseModel):
    points: list[PointSet] = Field(min_length=1, max_length=MOST_POINTS)


# --- the learnings, numbered ----------------------------------------------------------------


def _authors(found: LearningsView) -> list[str]:
    """Learning number n (from 1) is the learning of authors[n - 1]."""
    return [item.author.user_id for item in found.learnings]


def basis(found: LearningsView) -> str:
    parts = [f"{i.author.user_id} {i.created_at.isoformat()}" for i in found.learnings]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _words(language: Language, key: str) -> PromptTemplate:
    return prompts.template(data("learning", "regulation", language)[key], f"regulation {key}")


def _facts(language: Language, session: SessionView, found: LearningsView) -> str:
    words = data("learning", "regulation", language)
    lines = [
        _words(language, "overrun").format(
            title=o.title, minutes=o.minutes, timebox=o.timebox_minutes, over=o.minutes_over
        )
        for o in overruns(session)
    ] or [words["no_overrun"]]
    if found.average_rating is None:
        lines.append(words["no_rating"])
    else:
        lines.append(
            _words(language, "average").format(
                average=found.average_rating, answers=len(found.learnings)
            )
        )
    return "\n".join(f"- {line}" for line in lines)


def _numbered(language: Language, found: LearningsView, roles: dict[str, str]) -> str:
    words = data("learning", "regulation", language)
    line = _words(language, "learning")
    return "\n".join(
        line.format(
            number=n,
            role=words["roles"].get(roles.get(item.author.user_id, ""), "-"),
            rating=item.rating,
            text=prompts.data_line(item.text),
        )
        for n, item in enumerate(found.learnings, start=1)
    )


# --- the checks, without the model ----------------------------------------------------------


def check(answer: ModelPoints, count: int) -> tuple[list[RegulationPoint], list[RejectedPoint]]:
    """The points that pass (unknown citations dropped), and those that fail with why."""
    kept: list[RegulationPoint] = []
    rejected: list[RejectedPoint] = []
    seen: set[str] = set()
    for point in answer.points:
        text = re.sub(r"\s+", " ", point.text).strip()
        cited = sorted({n for n in point.learnings if 1 <= n <= count})
        problems: list[str] = []
        if not cited:
            unknown = sorted(set(point.learnings))
            problems.append(
                "cites no learning"
                if not unknown
                else f"cites only unknown learnings ({', '.join(map(str, unknown))}; "
                f"there are {count})"
            )
        if len(sentences(text)) != 1:
            problems.append("not exactly one sentence")
        if len(text) > MAX_POINT_CHARS:
            problems.append(f"{len(text)} characters, more than {MAX_POINT_CHARS}")
        if text.casefold() in seen:
            problems.append("repeats another point")
        if problems or len(kept) == MOST_POINTS:
            rejected.append(
                RejectedPoint(kind=point.kind, text=text, problems=problems or ["one too many"])
            )
            continue
        seen.add(text.casefold())
        kept.append(RegulationPoint(kind=point.kind, text=text, learnings=cited))
    return kept, rejected


def draft(
    gateway: LLMGateway,
    group: Group,
    *,
    language: Language,
    session: SessionView,
    found: LearningsView,
    roles: dict[str, str],
) -> tuple[list[RegulationPoint], list[RejectedPoint], str]:
    """The checked points, what was rejected, and the prompt's version."""
    template = prompt("learning", "regulation", language)
    words = data("learning", "regulation", language)
    count = len(found.learnings)
    rejected: list[RejectedPoint] = []
    feedback = ""
    for _attempt in range(2):
        text = template.render(
            facts=_facts(language, session, found),
            learnings=_numbered(language, found, roles),
            most=str(MOST_POINTS),
            feedback=feedback,
        )
        answer = gateway.complete(group, PURPOSE, [Message("user", text)], ModelPoints)
        kept, failed = check(answer, count)
        rejected.extend(failed)
        if kept:
            return kept, rejected, template.version
        reasons = "\n".join(f"- « {r.text} » : {'; '.join(r.problems)}" for r in failed)
        feedback = f"\n{words['feedback']}\n{reasons}\n"
    raise ModelOutputInvalid(
        "The model's regulation points failed the checks twice (none cited the participants' "
        "learnings). Nothing was changed: retry, or write the points yourself "
        "(PUT …/learnings/regulation/summary).",
        "invalid_regulation",
    )


# --- storage ----------------------------------------------------------------------------------


def stored(db: Session, session: CodevSession) -> RegulationSummary | None:
    return db.scalar(select(RegulationSummary).where(RegulationSummary.session_id == session.id))


def _store(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    points: Sequence[RegulationPoint],
    found: LearningsView,
    *,
    edited_by: str | None,
    version: str | None,
) -> RegulationSummary:
    authors = _authors(found)
    row = stored(db, session)
    if row is None:
        row = RegulationSummary(id=new_id(), session_id=session.id)
        db.add(row)
    body = StoredPoints(
        points=[
            StoredPoint(kind=p.kind, text=p.text, authors=[authors[n - 1] for n in p.learnings])
            for p in points
        ]
    )
    keys.seal(session.group_id, row, "body", body.model_dump_json())
    memory.enqueue(db, session.group_id, MemoryKind.regulation, row.id)
    row.basis = basis(found)
    row.edited = edited_by is not None
    row.edited_by = edited_by
    row.prompt_version = version
    row.updated_at = utcnow()
    db.flush()
    return row


def _points(
    keys: Keyring, session: CodevSession, row: RegulationSummary, authors: list[str]
) -> list[RegulationPoint]:
    body = StoredPoints.model_validate_json(keys.open(session.group_id, row, "body"))
    number = {author: n for n, author in enumerate(authors, start=1)}
    return [
        RegulationPoint(
            kind=p.kind, text=p.text, learnings=sorted(number[a] for a in p.authors if a in number)
        )
        for p in body.points
    ]


def summary_view(
    db: Session, keys: Keyring, session: CodevSession, found: LearningsView
) -> RegulationSummaryView | None:
    row = stored(db, session)
    if row is None:
        return None
    return RegulationSummaryView(
        points=_points(keys, session, row, _authors(found)),
        edited=row.edited,
        edited_by=sessions.person(db, keys, row.edited_by) if row.edited_by else None,
        current=row.basis == basis(found),
        prompt_version=row.prompt_version,
        updated_at=row.updated_at,
    )


# --- what the routes call -------------------------------------------------------------------


def require_learning_phase(session: CodevSession) -> None:
    if not sessions.state(session).has_reached(Phase.learning):
        raise Conflict(
            "The regulation summary is drawn from the learnings of phase 6 (learning and "
            f"regulation), which has not started: {sessions.state(session).describe()}. "
            "Start phase 6 and have the participants record their learnings first."
        )


def summarise(
    db: Session,
    keys: Keyring,
    *,
    gateway: LLMGateway,
    actor: User,
    group: Group,
    session: CodevSession,
) -> SummaryMade:
    """Make (or make again) the regulation points with the model; replaces the stored ones."""
    require_learning_phase(session)
    found = content.learnings(db, keys, session)
    if not found.learnings:
        raise Conflict(
            "No answers yet: the regulation points are drawn from the participants' learnings. "
            "Ask them to record theirs (PUT …/learnings), then try again."
        )
    language = Language(group.language)
    view = sessions.view(db, keys, group, session)
    points, rejected, version = draft(
        gateway,
        group,
        language=language,
        session=view,
        found=found,
        roles=sessions.participants(db, session),
    )
    _store(db, keys, session, points, found, edited_by=None, version=version)
    audit.record(db, actor.id, group.id, "regulation.summarise", "session", session.id)
    made = summary_view(db, keys, session, found)
    assert made is not None
    return SummaryMade(**made.model_dump(), rejected=rejected)


def edit(
    db: Session, keys: Keyring, actor: User, session: CodevSession, spec: PointsSet
) -> RegulationSummaryView:
    """The facilitator's own wording of the points; citations must name existing learnings."""
    require_learning_phase(session)
    found = content.learnings(db, keys, session)
    count = len(found.learnings)
    unknown = sorted({n for p in spec.points for n in p.learnings if not 1 <= n <= count})
    if unknown:
        raise Invalid(
            f"Learnings {', '.join(map(str, unknown))} do not exist: this session has "
            f"{count} learning(s), numbered from 1 in the order of GET …/learnings."
        )
    points = [
        RegulationPoint(kind=p.kind, text=p.text, learnings=sorted(set(p.learnings)))
        for p in spec.points
    ]
    previous = stored(db, session)
    version = previous.prompt_version if previous is not None else None
    _store(db, keys, session, points, found, edited_by=actor.id, version=version)
    audit.record(db, actor.id, session.group_id, "regulation.edit", "session", session.id)
    view = summary_view(db, keys, session, found)
    assert view is not None
    return view
