"""The model's review of the clarifying questions that no cue decided (phase 2).

The cues of companion/assist/clarity.py decide at once and are final; a question they leave
undecided (classified meanwhile by the '?' rule) goes to the model, in numbered batches with
the exposé as context and everything said in the session marked as data. Each review is stored
sealed with the group's key and found again by a keyed fingerprint of the normalised question
(`clarity_reviews`), so a question is reviewed once per session, and a corrected transcript
segment (a new text) gets its own review. A failure is stored per question, without content,
and tried again after `assist_retry_s` (or at once by POST …/clarity/review).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from companion.assist.clarity import REVIEWABLE, Kind, Reviewed, question_key
from companion.errors import DomainError
from companion.llm.gateway import GroupRef, LLMGateway, Message
from companion.locks import SessionLocks
from companion.method.phases import Language
from companion.prompts import data_line, prompt
from companion.store.keyring import Keyring
from companion.store.models import ClarityReview, CodevSession, new_id, utcnow

PURPOSE = "clarity.review"
FINGERPRINT = "clarity.question"  # the HMAC purpose: these fingerprints match nothing else
BATCH = 20  # questions per model call; a clarification rarely has more pending at once
REASON_CHARS = 200
DONE, FAILED = "done", "failed"
NO_MODEL = (
    "No language model is configured: the questions no cue decided keep the '?' rule (open "
    "or closed). Set COMPANION_LLM_BASE_URL or install the local model to have them reviewed."
)
UNANSWERED = "The model gave no valid kind for this question; it is tried again later."


# --- the model's answer --------------------------------------------------------------------


class ModelReview(BaseModel):
    # The enum and the length are in the schema the model is asked to follow, not in the
    # validation: an entry with an unknown kind or number is dropped, the others are kept.
    number: int = Field(json_schema_extra={"minimum": 1})
    kind: str = Field(json_schema_extra={"enum": [k.value for k in REVIEWABLE]})
    reason: str = Field(default="", json_schema_extra={"maxLength": REASON_CHARS})


class ModelReviews(BaseModel):
    reviews: list[ModelReview]


@dataclass(frozen=True)
class Batch:
    reviews: dict[int, Reviewed]  # index in the questions given -> review
    prompt_version: str
    model: str


def _kind(value: str) -> Kind | None:
    word = value.strip().lower().replace(" ", "_").replace("-", "_")
    return Kind(word) if word in {k.value for k in REVIEWABLE} else None


def review(
    gateway: LLMGateway,
    group: GroupRef,
    language: Language,
    exposé: Sequence[str],
    questions: Sequence[str],
) -> Batch:
    """One model call classifying `questions` (numbered from 1); answers for numbers not
    asked or with a kind that is not one of the five are ignored. Raises the gateway's errors
    (ModelUnavailable, ModelOutputInvalid, PolicyRefused...)."""
    template = prompt("clarity", "review", language)
    text = template.render(
        expose="\n".join(data_line(t) for t in exposé) or "-",
        questions="\n".join(f"{n}. {data_line(q)}" for n, q in enumerate(questions, start=1)),
        count=str(len(questions)),
    )
    answer = gateway.complete(group, PURPOSE, [Message("user", text)], ModelReviews)
    found: dict[int, Reviewed] = {}
    for entry in answer.reviews:
        kind = _kind(entry.kind)
        if kind is None or not 1 <= entry.number <= len(questions):
            continue
        found.setdefault(
            entry.number - 1, Reviewed(kind, " ".join(entry.reason.split())[:REASON_CHARS])
        )
    return Batch(found, template.version, gateway.settings.llm.model)


# --- stored reviews ------------------------------------------------------------------------

# One review of a session at a time in this process (the runner and POST share it); across
# processes the unique (session, fingerprint) key protects.
review_lock = SessionLocks()


def fingerprint(keys: Keyring, session: CodevSession, question: str) -> str:
    return keys.fingerprint(session.group_id, FINGERPRINT, question_key(question))


@dataclass(frozen=True)
class Lookup:
    reviewed: dict[str, Reviewed]  # question_key -> the model's review
    pending: list[str]  # questions without a review yet
    failed: dict[str, ClarityReview]  # question_key -> its failed row, for pending questions


def lookup(db: Session, keys: Keyring, session: CodevSession, questions: Sequence[str]) -> Lookup:
    prints = {question_key(q): fingerprint(keys, session, q) for q in questions}
    rows = {
        r.fingerprint: r
        for r in db.scalars(select(ClarityReview).where(ClarityReview.session_id == session.id))
    }
    reviewed: dict[str, Reviewed] = {}
    pending: list[str] = []
    failed: dict[str, ClarityReview] = {}
    for question in questions:
        key = question_key(question)
        row = rows.get(prints[key])
        stored = _opened(keys, session, row) if row is not None else None
        if stored is not None:
            reviewed[key] = stored
            continue
        pending.append(question)
        if row is not None and row.status == FAILED:
            failed[key] = row
    return Lookup(reviewed, pending, failed)


def _opened(keys: Keyring, session: CodevSession, row: ClarityReview) -> Reviewed | None:
    if row.status != DONE or row.review_sealed is None:
        return None
    try:
        raw = json.loads(keys.open(session.group_id, row, "review"))
        kind = Kind(raw["kind"])
    except (ValueError, KeyError, TypeError):
        return None  # an older shape: reviewed again
    return Reviewed(kind, str(raw.get("reason", "")))


def _store(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    question: str,
    *,
    found: Reviewed | None = None,
    error: str | None = None,
    batch: Batch | None = None,
) -> None:
    print_ = fingerprint(keys, session, question)
    row = db.scalar(
        select(ClarityReview).where(
            ClarityReview.session_id == session.id, ClarityReview.fingerprint == print_
        )
    )
    if row is None:
        row = ClarityReview(id=new_id(), session_id=session.id, fingerprint=print_)
        db.add(row)
    elif row.status == DONE and found is None:
        return  # reviewed meanwhile (another process): a failure does not undo it
    row.updated_at = utcnow()
    row.model = batch.model[:100] if batch is not None else None
    row.prompt_version = batch.prompt_version if batch is not None else None
    if found is not None:
        row.status, row.error = DONE, None
        keys.seal(
            session.group_id,
            row,
            "review",
            json.dumps({"kind": found.kind.value, "reason": found.reason}, ensure_ascii=False),
        )
    else:
        row.status, row.error, row.review_sealed = FAILED, (error or UNANSWERED)[:300], None


def due(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    questions: Sequence[str],
    retry_after: timedelta | None,
) -> list[str]:
    """The questions to send: without a review, and (with `retry_after`) not failed lately."""
    found = lookup(db, keys, session, questions)
    if retry_after is None:
        return found.pending
    now = utcnow()
    return [
        q
        for q in found.pending
        if (row := found.failed.get(question_key(q))) is None or row.updated_at + retry_after <= now
    ]


def run(
    db: Session,
    keys: Keyring,
    *,
    llm: Callable[[], LLMGateway],
    group: GroupRef,
    session: CodevSession,
    language: Language,
    exposé: Sequence[str],
    questions: Sequence[str],
) -> int:
    """Review `questions` (batched) and store every outcome, committed: a review, or the
    reason it failed (the question is then tried again later). Returns how many were
    reviewed; the first model error is raised after its failures are stored."""
    if not questions:
        return 0
    db.commit()  # no transaction stays open while the model thinks
    done = start = 0
    try:
        gateway = llm()
        for start in range(0, len(questions), BATCH):
            part = list(questions[start : start + BATCH])
            batch = review(gateway, group, language, exposé, part)
            for index, question in enumerate(part):
                found = batch.reviews.get(index)
                _store(db, keys, session, question, found=found, batch=batch)
                done += found is not None
            _commit(db)
    except DomainError as exc:  # ModelError, or PolicyRefused: said in the view, tried later
        for question in questions[start:]:
            _store(db, keys, session, question, error=str(exc))
        _commit(db)
        raise
    return done


def _commit(db: Session) -> None:
    try:
        db.commit()
    except IntegrityError:  # another process stored the same question first: keep theirs
        db.rollback()


def view_error(found: Lookup, model_configured: bool) -> str | None:
    """Why the pending questions are not reviewed, if something is wrong."""
    if not found.pending:
        return None
    if not model_configured:
        return NO_MODEL
    if found.failed:
        latest = max(found.failed.values(), key=lambda r: r.updated_at)
        return latest.error
    return None
