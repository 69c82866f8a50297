"""The client's draft synthesis: an outline at once, the model's part kept current.

- The outline needs no language model: the contract, the themes with every idea, and which
  themes and ideas are closest to the contract (embeddings). It is there within a second.
- The model's part (theme labels, questions to ponder, a draft action plan of 2-4 actions)
  cites ideas by reference; a citation of anything not in the list is dropped, a statement left
  citing nothing is a problem, and problems are sent back once. It is made while phase 4 runs
  (companion/assist/synthesis/runner.py) and stored sealed with the `basis` it was made from, so when
  the phase ends the draft is usually already there.
- The prompt is append-only (instructions, contract, then ideas in the order they came, the
  task last), so the model server's prefix cache makes each new run pay for new ideas only.
- Once a full run has seen most of the ideas, the few that come after it (the last turns
  before phase 4 ends) are added by an update: the model writes only what they add (labels
  for new themes, at most one action citing them), a fifth of a whole draft's tokens. The
  whole draft is made again when an idea it covers is gone, when nothing is new (the
  grouping was corrected), or when too much is new.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.assist.ideas import service as ideas
from companion.assist.ideas.grouping import unit
from companion.assist.ideas.schemas import IdeasView, IdeaView, ThemeView
from companion.assist.synthesis.schemas import (
    DraftAction,
    DraftStatus,
    Question,
    RelevantIdea,
    SynthesisView,
    ThemeRelevance,
)
from companion.errors import Conflict
from companion.llm.errors import ModelError, ModelOutputInvalid
from companion.llm.gateway import GroupRef, LLMGateway, Message, Progress, narrowed
from companion.method.phases import Language, Phase
from companion.prompts import prompt
from companion.store.keyring import Keyring
from companion.store.models import (
    CodevSession,
    Contract,
    Idea,
    Note,
    Synthesis,
    TranscriptSegment,
    new_id,
    utcnow,
)

MOST_RELEVANT = 3
MOST_CITED = 6  # beyond this a statement is marked `broad`: its citations say little
# What the prompt asks and the answer's schema allows: every cited reference is ~4 tokens to
# generate, and a small model pads lists with the first ideas (I1-I5) whatever it draws on.
CITE_AT_MOST = 3
# The prompt asks for 12 words a text; the schema bounds each at BRIEF_CHARS (generating is
# the slow part of a draft on a small local model).
BRIEF_CHARS = 140
TEXT_FIELDS = (
    ("ModelQuestion", "text"),
    *(("ModelAction", f) for f in ("objective", "first_step", "resources", "indicator")),
)
LABEL_MAX_WORDS = 8
PURPOSE = "synthesis.draft"
# A draft is updated (compose_update) rather than made again when at most UPDATE_AT_MOST ideas
# are new, at most UPDATE_SHARE of all lack a full run, and the last full run saw UPDATE_FROM
# ideas or more (early in the phase a whole new draft is worth its time).
UPDATE_AT_MOST = 6
UPDATE_SHARE = 0.25
UPDATE_FROM = 8

_compose_locks: dict[str, threading.Lock] = {}
_compose_guard = threading.Lock()


def compose_lock(session_id: str) -> threading.Lock:
    """One model run per session at a time in this process (runner and requests share it)."""
    with _compose_guard:
        return _compose_locks.setdefault(session_id, threading.Lock())


_written: dict[str, int] = {}  # session id -> chunks the model has streamed in the run under way
_started: dict[str, datetime] = {}  # session id -> when the run under way started
_abandon: set[str] = set()  # runs under way to give up at their next chunk


class DraftSuperseded(ModelError):
    """A draft run given up: phase 4 has ended and ideas came after the run started, so a
    new run is wanted at once rather than after this one."""

    kind = "superseded"


def newest_text(db: Session, session_id: str) -> datetime | None:
    """When the latest phase-4 note or transcript segment of the session was stored."""
    note = db.scalar(
        select(func.max(Note.created_at)).where(
            Note.session_id == session_id, Note.phase == Phase.consultation
        )
    )
    segment = db.scalar(
        select(func.max(TranscriptSegment.created_at)).where(
            TranscriptSegment.session_id == session_id,
            TranscriptSegment.phase == Phase.consultation,
        )
    )
    return max((t for t in (note, segment) if t is not None), default=None)


def abandon_if_stale(session_id: str, newest: datetime | None) -> bool:
    """Give up the run under way for this session if it started before `newest` (the latest
    phase-4 text); whether one was given up."""
    started = _started.get(session_id)
    if started is None or newest is None or newest <= started:
        return False
    _abandon.add(session_id)
    return True


def writing(session_id: str) -> int | None:
    """How far the model run under way for this session has got (in streamed chunks, about
    one token each); None when no run is under way in this process."""
    return _written.get(session_id)


# --- the model's answer --------------------------------------------------------------------


class ModelLabel(BaseModel):
    theme: int
    label: str = Field(min_length=1, max_length=80)


class ModelQuestion(BaseModel):
    text: str = Field(min_length=3, max_length=300)
    ideas: list[str]


class ModelAction(BaseModel):
    """Lengths as the action plan takes them, so the client can post a draft action as is."""

    objective: str = Field(min_length=3, max_length=200)
    first_step: str = Field(min_length=3, max_length=200)
    resources: str = Field(max_length=200)
    indicator: str = Field(min_length=3, max_length=200)
    weeks: int = Field(ge=1, le=12)
    ideas: list[str]


MAX_QUESTIONS = 4
MAX_ACTIONS = 4


class ModelDraft(BaseModel):
    labels: list[ModelLabel] = Field(max_length=20)
    questions: list[ModelQuestion] = Field(min_length=1, max_length=MAX_QUESTIONS)
    actions: list[ModelAction] = Field(min_length=2, max_length=MAX_ACTIONS)


class ModelUpdate(ModelDraft):
    """The model's addendum to a draft for the ideas that came after it: labels for new themes
    and at most one action drawn from the new ideas (no question: every token counts here)."""

    questions: list[ModelQuestion] = Field(default=[], max_length=0)
    actions: list[ModelAction] = Field(max_length=1)


def answer_schema(
    unlabelled: Sequence[int], refs: Sequence[str], model: type[ModelDraft] = ModelDraft
) -> type[ModelDraft]:
    """ModelDraft, with a JSON schema narrowed to this run: labels only for the `unlabelled`
    themes, citations only of known refs, one to CITE_AT_MOST each. A server that decodes under
    the schema (llama.cpp turns it into a grammar) then cannot spend tokens on what the checks
    would drop: a small model otherwise relabels every theme and cites every idea, which made
    the answer twice as long. Validation stays ModelDraft's: the checks below decide."""

    def edit(schema: dict[str, Any]) -> None:
        defs = schema["$defs"]
        schema["properties"]["labels"]["maxItems"] = len(unlabelled)
        if unlabelled:
            defs["ModelLabel"]["properties"]["theme"]["enum"] = list(unlabelled)
        for name, field in TEXT_FIELDS:
            defs[name]["properties"][field]["maxLength"] = BRIEF_CHARS
        for name in ("ModelQuestion", "ModelAction"):
            defs[name]["properties"]["ideas"].update(
                items={"type": "string", "enum": list(refs)}, minItems=1, maxItems=CITE_AT_MOST
            )
        if model is ModelUpdate:  # the update writes no question: not even an empty list
            del schema["properties"]["questions"]
            schema["required"] = [r for r in schema.get("required", []) if r != "questions"]

    return narrowed(model, edit)


class StoredDraft(BaseModel):
    """What is sealed in syntheses.body: the checked model part, citing idea ids."""

    labels: dict[str, str]  # theme id -> label
    questions: list[Question]
    actions: list[DraftAction]
    # The ideas the draft covers, and those its last full run saw (an update adds to a draft
    # only while most of its ideas had a full run); empty in drafts stored before stop 9.
    made_from: list[str] = []
    full_from: list[str] = []
    contract_id: str | None = None


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    contract: str | None
    contract_id: str | None
    ideas: IdeasView
    basis: str
    language: Language

    @property
    def all_ideas(self) -> list[IdeaView]:
        found = [i for t in self.ideas.themes for i in t.ideas]
        return sorted(found, key=lambda i: int(i.ref[1:]))


def inputs(db: Session, keys: Keyring, session: CodevSession, language: Language) -> Inputs:
    row = db.scalar(select(Contract).where(Contract.session_id == session.id))
    text = keys.open(session.group_id, row, "text") if row is not None else None
    view = ideas.view(db, keys, session)
    version = prompt_version(language)
    parts = [
        f"contract:{row.id}:{row.confirmed_at.isoformat()}" if row else "contract:-",
        f"prompt:{language}:{version}",
        *sorted(f"{i.id}:{t.id}" for t in view.themes for i in t.ideas),
    ]
    return Inputs(
        contract=text,
        contract_id=row.id if row else None,
        ideas=view,
        basis=hashlib.sha256("\n".join(parts).encode()).hexdigest(),
        language=language,
    )


def prompt_version(language: Language) -> str:
    """The versions of the prompt files a draft was made with (draft, task, update), e.g.
    'd1.t5.u1' (the column holds 20 characters)."""
    draft, task = prompt("synthesis", "draft", language), prompt("synthesis", "task", language)
    update = prompt("synthesis", "update", language)
    return f"d{draft.version}.t{task.version}.u{update.version}"


def require_ideas(found: Inputs) -> None:
    if not found.ideas.ideas:
        raise Conflict(
            "There is nothing to synthesise yet: the consultation (phase 4) has no ideas from "
            "consultants. Add notes or recordings to phase 4 first."
        )


# --- the outline (no model) ------------------------------------------------------------------


def _vectors(db: Session, keys: Keyring, session: CodevSession) -> dict[str, np.ndarray]:
    rows = db.scalars(select(Idea).where(Idea.session_id == session.id))
    key = keys.get(session.group_id)
    return {
        r.id: np.frombuffer(
            key.open(r.vector_sealed, Idea.__tablename__, r.id, "vector"), np.float32
        )
        for r in rows
    }


def relevance(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    found: Inputs,
    embed: ideas.Embed,
) -> tuple[list[ThemeRelevance], list[RelevantIdea]]:
    """Themes and ideas by closeness to the contract (none without a contract)."""
    if not found.contract or not found.ideas.ideas:
        return [], []
    target = unit(np.asarray(ideas.embedded(embed, [found.contract])[0], dtype=np.float32))
    vectors = _vectors(db, keys, session)
    themes: list[ThemeRelevance] = []
    scored: list[tuple[float, IdeaView, ThemeView]] = []
    for theme in found.ideas.themes:
        scores = [float(vectors[i.id] @ target) for i in theme.ideas if i.id in vectors]
        if not scores:
            continue
        themes.append(
            ThemeRelevance(
                theme_id=theme.id,
                number=theme.number,
                label=theme.label,
                score=round(float(np.mean(scores)), 3),
            )
        )
        scored += [
            (float(vectors[i.id] @ target), i, theme)
            for i in theme.ideas
            if i.id in vectors and i.duplicate_of is None
        ]
    themes.sort(key=lambda t: -t.score)
    scored.sort(key=lambda s: -s[0])
    top = [
        RelevantIdea(
            text=idea.text,
            theme_number=theme.number,
            score=round(score, 3),
            ideas=[idea.id],
            refs=[idea.ref],
        )
        for score, idea, theme in scored[:MOST_RELEVANT]
    ]
    return themes, top


# --- the model's part ------------------------------------------------------------------------


def _idea_lines(found: Inputs) -> str:
    number = {i.id: t.number for t in found.ideas.themes for i in t.ideas}
    word = "thème" if found.language == Language.fr else "theme"
    return "\n".join(f"[{i.ref}] ({word} {number[i.id]}) {i.text}" for i in found.all_ideas)


def _broad(refs: Sequence[str], known: dict[str, str]) -> bool:
    """Citing (nearly) every idea says nothing about where a statement comes from. Small models
    do it; sending it back doubled the time without changing it (bench/eval), so it is shown."""
    return len(refs) > MOST_CITED and len(known) > MOST_CITED


def _check(
    answer: ModelDraft, found: Inputs, today: date, actions_needed: int = 2
) -> tuple[StoredDraft, list[str]]:
    """Keep what cites known ideas; say what is wrong with the rest."""
    by_ref = {i.ref: i.id for i in found.all_ideas}
    themes = {t.number: t.id for t in found.ideas.themes}
    problems: list[str] = []

    def cited(refs: Sequence[str], what: str) -> list[str] | None:
        known = list(dict.fromkeys(r.strip().strip("[]") for r in refs))
        known = [r for r in known if r in by_ref]
        if not known:
            problems.append(f"{what} cites no idea of the list")
            return None
        return known

    labels = {}
    for item in answer.labels:
        words = item.label.split()
        if item.theme in themes and 0 < len(words) <= LABEL_MAX_WORDS:
            labels[themes[item.theme]] = " ".join(words)
    questions: list[Question] = []
    for n, q in enumerate(answer.questions, start=1):
        if _same(q.text) in {_same(k.text) for k in questions}:
            continue  # said twice: once is enough
        refs = cited(q.ideas, f"question {n}")
        if refs is not None:
            questions.append(
                Question(
                    text=q.text,
                    refs=refs,
                    ideas=[by_ref[r] for r in refs],
                    broad=_broad(refs, by_ref),
                )
            )
    actions: list[DraftAction] = []
    for n, a in enumerate(answer.actions, start=1):
        refs = cited(a.ideas, f"action {n}")
        if refs is not None:
            actions.append(
                DraftAction(
                    objective=a.objective,
                    first_step=a.first_step,
                    resources=a.resources,
                    indicator=a.indicator,
                    due_date=today + timedelta(weeks=a.weeks),
                    refs=refs,
                    ideas=[by_ref[r] for r in refs],
                    broad=_broad(refs, by_ref),
                )
            )
    if len(actions) < actions_needed:
        problems.append(f"{len(actions)} usable actions, at least {actions_needed} are needed")
    return StoredDraft(labels=labels, questions=questions, actions=actions), problems


def _head(found: Inputs) -> str:
    return prompt("synthesis", "draft", found.language).render(
        contract=found.contract or "-", ideas=_idea_lines(found)
    )


def _unlabelled(found: Inputs) -> list[int]:
    """Themes neither the model nor the facilitator labelled: generating is the slow part, and
    a theme that grew keeps its label (not current) until a run has time for it."""
    return [t.number for t in found.ideas.themes if t.label_source not in ideas.KEPT_LABELS]


def compose(
    gateway: LLMGateway,
    group: GroupRef,
    found: Inputs,
    today: date,
    progress: Progress | None = None,
) -> StoredDraft:
    """The model's part, checked; sent back once with the problems. Raises ModelOutputInvalid
    when the second answer still has no usable actions."""
    lang = found.language
    unlabelled = _unlabelled(found)
    task = prompt("synthesis", "task", lang).render(themes=", ".join(map(str, unlabelled)) or "-")
    schema = answer_schema(unlabelled, [i.ref for i in found.all_ideas])
    messages = [Message("user", f"{_head(found)}\n{task}")]
    best: StoredDraft | None = None
    for attempt in range(2):
        try:
            answer = gateway.complete(group, PURPOSE, messages, schema, progress)
        except ModelOutputInvalid:
            if best is None:
                raise
            break  # the second answer is unusable: the first one's usable part may do
        draft, problems = _check(answer, found, today)
        if best is None or len(draft.actions) > len(best.actions):
            best = draft
        if not problems:
            return draft
        if attempt == 0:
            retry = prompt("synthesis", "retry", lang).render(
                problems="\n".join(f"- {p}" for p in problems)
            )
            messages += [Message("assistant", answer.model_dump_json()), Message("user", retry)]
    if best is not None and len(best.actions) >= 2:
        return best
    raise ModelOutputInvalid(
        "The model's draft synthesis failed its checks twice (its actions did not cite the "
        "consultants' ideas). Nothing was lost: the themes are there; retry.",
        "invalid_synthesis",
    )


def update_of(previous: StoredDraft | None, found: Inputs) -> list[IdeaView] | None:
    """The ideas an update would add to `previous`, or None when the draft is to be made in
    full: no usable previous draft, another contract, an idea of it gone (a turn corrected),
    nothing new, too much new since its last full run, or too few ideas in that run."""
    if (
        previous is None
        or len(previous.full_from) < UPDATE_FROM
        or previous.contract_id != found.contract_id
    ):
        return None
    current = {i.id for i in found.all_ideas}
    covered = set(previous.made_from)
    if not covered <= current:
        return None
    new = [i for i in found.all_ideas if i.id not in covered]
    unseen = len(current - set(previous.full_from))
    if not new or len(new) > UPDATE_AT_MOST or unseen > UPDATE_SHARE * len(current):
        return None
    return new


def _same(text: str) -> str:
    """What makes two statements the same: a small model repeats its own, words for words."""
    return " ".join(text.casefold().split()).rstrip(" .?!")


def compose_update(
    gateway: LLMGateway,
    group: GroupRef,
    found: Inputs,
    previous: StoredDraft,
    new: Sequence[IdeaView],
    today: date,
    progress: Progress | None = None,
) -> StoredDraft:
    """`previous` with what the `new` ideas add: labels for new themes and at most one action
    citing them (a fifth of a whole draft's tokens, so the draft with every idea is there soon
    after phase 4 ends). The prompt starts like a full run's, so the server's prefix cache
    serves all but the new ideas and this short task. An action citing none of the new ideas,
    or repeating one of the draft's, is dropped; no retry (what the draft holds stands)."""
    unlabelled = _unlabelled(found)
    refs = {i.id: i.ref for i in found.all_ideas}
    task = prompt("synthesis", "update", found.language).render(
        new=", ".join(refs[i.id] for i in new),
        themes=", ".join(map(str, unlabelled)) or "-",
    )
    schema = answer_schema(unlabelled, [refs[i.id] for i in new], ModelUpdate)
    answer = gateway.complete(
        group, PURPOSE, [Message("user", f"{_head(found)}\n{task}")], schema, progress
    )
    added, _problems = _check(answer, found, today, actions_needed=0)
    themes = {t.id for t in found.ideas.themes}
    planned = {_same(a.objective) for a in previous.actions}
    return StoredDraft(
        labels={**{k: v for k, v in previous.labels.items() if k in themes}, **added.labels},
        questions=previous.questions,
        actions=[
            *previous.actions,
            *(a for a in added.actions if _same(a.objective) not in planned),
        ][:MAX_ACTIONS],
    )


# --- stored drafts ---------------------------------------------------------------------------


def stored(db: Session, session: CodevSession) -> Synthesis | None:
    return db.scalar(select(Synthesis).where(Synthesis.session_id == session.id))


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


def make_draft(
    db: Session,
    keys: Keyring,
    gateway: LLMGateway,
    group: GroupRef,
    session: CodevSession,
    found: Inputs,
) -> Synthesis:
    """Run the model for `found` and store the result (or the failure, then re-raise)."""
    version = prompt_version(found.language)
    started = time.monotonic()
    _written[session.id] = 0
    _started[session.id] = utcnow()

    def progress(chunks: int) -> None:
        _written[session.id] = chunks
        if session.id in _abandon:
            raise DraftSuperseded("Newer ideas came before the end of phase 4: drafting again.")

    previous = _ready_draft(db, keys, session, version)
    new = update_of(previous, found)
    every = sorted(i.id for i in found.all_ideas)
    try:
        draft = None
        if previous is not None and new is not None:
            try:
                draft = compose_update(
                    gateway, group, found, previous, new, utcnow().date(), progress
                )
                full_from = previous.full_from
            except ModelOutputInvalid:
                new = None  # the addendum is unusable: the whole draft is made again
        if draft is None:
            draft = compose(gateway, group, found, utcnow().date(), progress)
            full_from = every
        draft = draft.model_copy(
            update={"made_from": every, "full_from": full_from, "contract_id": found.contract_id}
        )
    except DraftSuperseded:
        raise  # nothing stored: the next run covers every idea
    except ModelError as exc:
        store(db, keys, session, found.basis, error=str(exc), version=version)
        raise
    finally:
        _written.pop(session.id, None)
        _started.pop(session.id, None)
        _abandon.discard(session.id)
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
            db, keys, session, theme_id, label, ideas.basis_of_ids([i.id for i in members])
        )
    return row


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
        current=row is not None and row.basis == found.basis and row.status == DraftStatus.ready,
        error=row.error if row is not None and row.status == DraftStatus.failed else None,
        prompt_version=row.prompt_version if row is not None else None,
        model_seconds=row.seconds if row is not None else None,
        updated_at=row.updated_at if row is not None else None,
    )
