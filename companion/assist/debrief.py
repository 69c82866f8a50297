"""Learning and regulation (phase 6): the debrief questions for each participant, and what the
session's evaluation says (ratings, and how each phase kept to its timebox)."""

from __future__ import annotations

from pydantic import BaseModel

from companion.assist.regulation import Overrun, RegulationSummaryView, overruns
from companion.method.phases import Language
from companion.prompts import data
from companion.sessions.schemas import LearningsView, SessionView


class DebriefQuestions(BaseModel):
    role: str
    mine: list[str]
    process: list[str]


class Regulation(BaseModel):
    answers: int
    participants: int
    average_rating: float | None
    ratings: dict[int, int]
    overruns: list[str]  # phases that went past their timebox (titles)
    timebox_overruns: list[Overrun]  # the same, with the minutes over
    missing: list[str]  # participants who have not answered yet (names)
    summary: RegulationSummaryView | None = None  # the regulation points, once made


def questions(language: Language, role: str) -> DebriefQuestions:
    """`role` is the caller's role in the session: client, consultant or facilitator."""
    raw = data("learning", "questions", language)
    mine = raw["client"] if role == "client" else raw["consultant"] if role == "consultant" else []
    return DebriefQuestions(role=role, mine=list(mine), process=list(raw["process"]))


def regulation(
    session: SessionView,
    learnings: LearningsView,
    summary: RegulationSummaryView | None = None,
) -> Regulation:
    people = [session.client, *session.consultants, session.facilitator]
    answered = {item.author.user_id for item in learnings.learnings}
    ratings = dict.fromkeys(range(1, 6), 0)
    for item in learnings.learnings:
        ratings[item.rating] += 1
    return Regulation(
        answers=len(learnings.learnings),
        participants=len(people),
        average_rating=learnings.average_rating,
        ratings=ratings,
        overruns=[p.title for p in session.phases if p.overrun],
        timebox_overruns=overruns(session),
        missing=[p.name for p in people if p.user_id not in answered],
        summary=summary,
    )
