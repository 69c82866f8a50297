"""Clarity prompts for the facilitator during clarification (phase 2).

Each question is classified at once by cues from prompts/clarity/cues.<lang>.toml (disguised
advice, judgment, interpretation, closed or open question); the facets of the situation that no
text has touched yet are listed with an open question to suggest. No model call is needed, so a
flag appears as soon as a question is stored. A question no cue decided is classified by the
'?' rule until the model has reviewed it (companion/assist/clarity_review.py); a cue is never
overridden by the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from pydantic import BaseModel, Field

from companion.method.phases import Language
from companion.prompts import data
from companion.text import normalise, words

_SENTENCE = re.compile(r"[^.!?…]+[.!?…]*")
_CLAUSE = re.compile(r"[,;:]\s*")


class Kind(StrEnum):
    open_question = "open_question"
    closed_question = "closed_question"
    disguised_advice = "disguised_advice"
    judgment = "judgment"
    interpretation = "interpretation"
    # A consultant's turn in which nothing was recognised as a question (speech transcribed
    # without "?", no cue): shown as it is, never dropped, until the model's review decides.
    undecided = "undecided"


REVIEWABLE = tuple(k for k in Kind if k is not Kind.undecided)  # what the model may answer


class Source(StrEnum):
    cue = "cue"  # a cue of prompts/clarity/cues.<lang>.toml decided; the model never overrides
    model = "model"  # no cue matched; the model's review decided
    rule = "rule"  # no cue matched, not reviewed yet: open if it ends with '?', else closed;
    # a turn with no question in it: undecided


FLAGGED = (Kind.disguised_advice, Kind.judgment, Kind.interpretation)
# Order matters: a judgment phrased as a question is a judgment, not a question; an
# `information` cue (an open question about what the client thinks or tried) comes next, so
# "What do you think you should do?" is not taken for advice.
_INFORMATION = "information"
_ORDER = (
    Kind.judgment,
    _INFORMATION,
    Kind.disguised_advice,
    Kind.interpretation,
    Kind.open_question,  # anchored on interrogative words, so before the looser closed cues
    Kind.closed_question,
)


@dataclass(frozen=True)
class Cues:
    patterns: dict[str, list[re.Pattern[str]]]  # by kind, and the `information` cues
    facets: dict[str, tuple[str, frozenset[str], str]]  # name -> (label, words, question)


@cache
def cues(language: Language) -> Cues:
    raw = data("clarity", "cues", language)
    patterns = {k: [re.compile(p, re.IGNORECASE) for p in raw.get(k, [])] for k in _ORDER}
    facets = {
        name: (f["label"], frozenset(w.lower() for w in f["words"]), f["question"])
        for name, f in raw["facets"].items()
    }
    return Cues(patterns, facets)


def question_key(text: str) -> str:
    """What makes two questions the same for a review: case and spacing aside."""
    return " ".join(normalise(text).casefold().split())


def classify(question: str, language: Language) -> tuple[Kind, str | None]:
    """The kind of one question and the cue that decided it (None: no cue matched)."""
    text = normalise(question)
    for name in _ORDER:
        for pattern in cues(language).patterns[name]:
            match = pattern.search(text)
            if match:
                kind = Kind.open_question if name == _INFORMATION else Kind(name)
                return kind, match.group(0).strip()
    # Speech comes with lead-ins ("Et du côté des horaires, comment ça se passe"): the question
    # words are looked for at the start of each clause too.
    for clause in _CLAUSE.split(text)[1:]:
        for kind in (Kind.open_question, Kind.closed_question):
            for pattern in cues(language).patterns[kind]:
                if match := pattern.search(clause):
                    return kind, match.group(0).strip()
    return (Kind.open_question if text.endswith("?") else Kind.closed_question), None


def questions_in(text: str, language: Language) -> list[str]:
    """The sentences of a turn that ask something: a '?', or a cue of any kind (a transcript
    often writes a question without its '?'; advice and judgments are flagged without one)."""
    found = []
    for sentence in (s.strip() for s in _SENTENCE.findall(normalise(text))):
        if sentence.endswith("?") or classify(sentence, language)[1] is not None:
            found.append(sentence)
    return found


class Flag(BaseModel):
    text: str
    author_id: str
    source_id: str
    kind: Kind
    cue: str | None
    flagged: bool
    source: Source = Field(
        description="What decided the kind: a cue (instant, final), the model's review, or the "
        "'?' rule while the question awaits the model."
    )
    reason: str | None = Field(default=None, description="The model's reason, when it decided.")


class Facet(BaseModel):
    name: str
    label: str
    clear: bool
    suggestion: str | None


class ClarityView(BaseModel):
    questions: list[Flag]
    flagged: int
    facets: list[Facet]
    suggestions: list[str]
    alerts: list[str]
    pending: int = Field(
        default=0, description="Questions no cue decided that still await the model's review."
    )
    review_error: str | None = Field(
        default=None,
        description="Why pending questions are not reviewed (no model configured, or the last "
        "try failed); their kind comes from the '?' rule meanwhile.",
    )


@dataclass(frozen=True)
class Reviewed:
    """The model's kind for a question no cue decided, and its short reason."""

    kind: Kind
    reason: str


@dataclass(frozen=True)
class Utterance:
    """A piece of text from the session: a note or a transcript segment."""

    source_id: str
    author_id: str
    text: str
    # Said by the client (their note or their own microphone): answers, not questions.
    client: bool = False


def asked(utterance: Utterance, language: Language) -> tuple[list[str], bool]:
    """What a clarification turn asks: its questions; a consultant's turn in which none is
    recognised is taken whole (undecided, the second value), so no question is lost for want
    of a '?'."""
    found = questions_in(utterance.text, language)
    if found or utterance.client:
        return found, False
    whole = " ".join(normalise(utterance.text).split())
    return ([whole], True) if whole else ([], False)


def undecided(clarification: list[Utterance], language: Language) -> list[str]:
    """The questions of the clarification that no cue decides (each once): the model's part."""
    found: dict[str, str] = {}
    for utterance in clarification:
        for question in asked(utterance, language)[0]:
            if classify(question, language)[1] is None:
                found.setdefault(question_key(question), question)
    return list(found.values())


def analyse(
    exposé: list[Utterance],
    clarification: list[Utterance],
    language: Language,
    limit: int = 3,
    reviewed: Mapping[str, Reviewed] | None = None,
) -> ClarityView:
    """Classify every question of the clarification and list the facets still unclear.

    `reviewed`: the model's reviews by `question_key`; they decide the questions no cue
    matched (a cue always wins)."""
    reviewed = reviewed or {}
    flags = []
    for utterance in clarification:
        questions, whole = asked(utterance, language)
        for question in questions:
            kind, cue = classify(question, language)
            source, reason = Source.cue, None
            if cue is None:
                review = reviewed.get(question_key(question))
                source = Source.rule if review is None else Source.model
                if review is not None:
                    kind, reason = review.kind, review.reason
                elif whole:
                    kind = Kind.undecided
            flags.append(
                Flag(
                    text=question,
                    author_id=utterance.author_id,
                    source_id=utterance.source_id,
                    kind=kind,
                    cue=cue,
                    flagged=kind in FLAGGED,
                    source=source,
                    reason=reason,
                )
            )
    # A facet is clear once the exposé or an information question touches it; flagged
    # questions (advice, judgments) do not clarify anything.
    seen = set().union(*(words(u.text) for u in exposé)) if exposé else set()
    for flag in flags:
        if not flag.flagged:
            seen |= set(words(flag.text))
    facets = []
    for name, (label, cue_words, question) in cues(language).facets.items():
        clear = any(w in seen for w in cue_words)
        facets.append(
            Facet(name=name, label=label, clear=clear, suggestion=None if clear else question)
        )
    return ClarityView(
        questions=flags,
        flagged=sum(f.flagged for f in flags),
        facets=facets,
        suggestions=[f.suggestion for f in facets if f.suggestion][:limit],
        alerts=[],
    )
