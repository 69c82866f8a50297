"""Answer a member's question over the group's own memory, with citations that can be checked.

The group's memory search finds the nearest memories (its own collection only); the model
answers from them alone, citing them by number; the citations are then checked without the
model: a number that is not one of the retrieved memories is dropped, and an answer that cites
none of them is regenerated once with the reason, then refused (502). No memory found: no call.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion import prompts
from companion.config import Settings
from companion.errors import Invalid
from companion.llm.errors import ModelOutputInvalid
from companion.llm.gateway import LLMGateway, Message
from companion.memory.schemas import MemoryHit, MemoryKind, MemoryQuery
from companion.memory.service import Filters, Memory
from companion.method.phases import Language
from companion.prompts import data, prompt
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group, PhaseRun, TranscriptSegment
from companion.text import Integer

log = logging.getLogger(__name__)

PURPOSE = "memory.answer"
DEFAULT_HITS = 8
MOST_HITS = 20  # each hit is up to COMPANION_MEMORY_SNIPPET_CHARS of prompt

# "[2]" or "[1, 3]" in the answer; three digits at most, so a year in brackets is left alone.
_MARK = re.compile(r"(\s?)\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")


class MemoryQuestion(BaseModel):
    question: MemoryQuery = Field(
        description="What to ask the group's memory, in French or English."
    )
    kind: MemoryKind | None = Field(default=None, description="Only this kind of memory.")
    session_id: str | None = Field(default=None, description="Only this session's memories.")
    since: str | None = Field(
        default=None, description="Written on or after: YYYY-MM-DD or an ISO 8601 time."
    )
    until: str | None = Field(
        default=None, description="Written on or before: YYYY-MM-DD (that day included) or a time."
    )
    limit: Integer = Field(
        default=DEFAULT_HITS, ge=1, le=MOST_HITS, description="How many memories to answer from."
    )


class Citation(BaseModel):
    number: int = Field(description="The [n] that marks it in the answer.")
    memory_id: str
    kind: MemoryKind
    source_id: str = Field(description="The note, contract, action, learning or segment.")
    session_id: str
    session_date: date = Field(description="The day the session started (or was planned).")
    phase: str
    at: datetime = Field(description="When the source was written or last changed.")
    snippet: str
    start_s: float | None = Field(default=None, description="Transcript segments: start, in s.")
    end_s: float | None = Field(default=None, description="Transcript segments: end, in s.")


class MemoryAnswer(BaseModel):
    question: str
    found: bool = Field(description="False when the memory holds nothing that answers it.")
    answer: str
    citations: list[Citation]
    pending: int = Field(description="Items of this group still waiting to be indexed.")
    prompt_version: str | None = Field(description="None when no model was asked.")


class AnswerDraft(BaseModel):
    """The model's answer."""

    answered: bool = True
    answer: str = Field(min_length=1, max_length=8000)
    citations: list[int] = Field(default_factory=list, max_length=50)


def check_question(question: str, settings: Settings) -> str:
    text = question.strip()
    if not text:
        raise Invalid("The question is empty; write what you want to know about the group's past.")
    most = settings.memory.max_query_chars
    if len(text) > most:
        raise Invalid(
            f"The question is {len(text)} characters long; the limit is {most} "
            "(COMPANION_MEMORY_MAX_QUERY_CHARS). Shorten it."
        )
    return text


def cited(draft: AnswerDraft, count: int) -> tuple[str, list[int], list[int]]:
    """The answer with the markers of unknown sources removed, the valid numbers it cites in
    order of first mention (inline markers, then the listed ones), and the unknown ones."""
    mentioned: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(2))]
        mentioned.extend(numbers)
        kept = [n for n in dict.fromkeys(numbers) if 1 <= n <= count]
        return f"{match.group(1)}[{', '.join(map(str, kept))}]" if kept else ""

    text = _MARK.sub(keep, draft.answer).strip()
    mentioned = list(dict.fromkeys([*mentioned, *draft.citations]))
    valid = [n for n in mentioned if 1 <= n <= count]
    return text, valid, [n for n in mentioned if n not in valid]


def says_nothing_found(answer: str, phrasings: Sequence[str]) -> bool:
    """Whether the answer says the sources hold nothing on the question."""
    said = " ".join(answer.casefold().replace("’", "'").split())
    return any(p.casefold() in said for p in phrasings)


def _sources(hits: Sequence[MemoryHit], dates: dict[str, date]) -> str:
    # Escaped, so a memory cannot close its <source> and pose as the prompt.
    return "\n".join(
        f'<source n="{n}" kind="{hit.kind.value}" session="{dates[hit.session_id]}" '
        f'phase="{hit.phase}">{html.escape(hit.snippet, quote=False)}</source>'
        for n, hit in enumerate(hits, start=1)
    )


def _session_dates(db: Session, group_id: str, session_ids: set[str]) -> dict[str, date]:
    """The day each of these sessions of the group started (its first phase), else was made."""
    if not session_ids:
        return {}
    rows = db.execute(
        select(CodevSession.id, CodevSession.created_at, func.min(PhaseRun.started_at))
        .outerjoin(PhaseRun, PhaseRun.session_id == CodevSession.id)
        .where(CodevSession.group_id == group_id, CodevSession.id.in_(session_ids))
        .group_by(CodevSession.id, CodevSession.created_at)
    ).all()
    return {sid: (started or created).date() for sid, created, started in rows}


def _segment_times(
    db: Session, session_ids: set[str], hits: Sequence[MemoryHit]
) -> dict[str, tuple[float, float]]:
    ids = {h.source_id for h in hits if h.kind is MemoryKind.segment}
    if not ids:
        return {}
    rows = db.execute(
        select(TranscriptSegment.id, TranscriptSegment.start_s, TranscriptSegment.end_s).where(
            TranscriptSegment.id.in_(ids), TranscriptSegment.session_id.in_(session_ids)
        )
    ).all()
    return {sid: (start, end) for sid, start, end in rows}


def answer(
    db: Session,
    keys: Keyring,
    *,
    memory: Memory,
    llm: Callable[[], LLMGateway],
    group: Group,
    question: str,
    filters: Filters | None = None,
    limit: int = DEFAULT_HITS,
) -> MemoryAnswer:
    """The model's answer from the group's nearest memories, each citation one of them.

    `llm` is called only when there is something to answer from, so a question the memory
    holds nothing on needs no model.
    """
    language = Language(group.language)
    messages = data("memory", "answer", language)
    text = check_question(question, memory.settings)
    found = memory.search(db, keys, group_id=group.id, query=text, filters=filters, limit=limit)
    dates = _session_dates(db, group.id, {h.session_id for h in found.hits})
    # A memory whose session is gone (its removal still queued) is not evidence any more.
    hits = [h for h in found.hits if h.session_id in dates]
    times = _segment_times(db, set(dates), hits)
    if not hits:
        return MemoryAnswer(
            question=text,
            found=False,
            answer=messages["nothing"],
            citations=[],
            pending=found.pending,
            prompt_version=None,
        )
    # The search may have indexed waiting items: commit, so no write lock is held while the
    # model thinks (its audit row is written in a transaction of its own).
    db.commit()
    gateway = llm()
    template = prompt("memory", "answer", language)
    values = {
        "sources": _sources(hits, dates),
        "question": html.escape(text, quote=False),
        "count": str(len(hits)),
        "feedback": "",
    }
    for _attempt in range(2):
        draft = gateway.complete(
            group, PURPOSE, [Message("user", template.render(**values))], AnswerDraft
        )
        body, numbers, unknown = cited(draft, len(hits))
        # A small model may write "nothing found" and cite a source all the same.
        if not draft.answered or says_nothing_found(body, messages["not_found"]):
            return MemoryAnswer(
                question=text,
                found=False,
                answer=messages["unanswered"],
                citations=[],
                pending=found.pending,
                prompt_version=template.version,
            )
        if unknown:
            log.info("The memory answer cited %d unknown source(s); dropped.", len(unknown))
        if numbers:
            return MemoryAnswer(
                question=text,
                found=True,
                answer=body,
                citations=[_citation(n, hits[n - 1], dates, times) for n in numbers],
                pending=found.pending,
                prompt_version=template.version,
            )
        values["feedback"] = "\n" + prompts.template(
            messages["feedback"], "memory/answer feedback"
        ).format(cited=", ".join(f"[{n}]" for n in unknown) or "-", count=str(len(hits)))
    raise ModelOutputInvalid(
        "The model's answer cited none of the group's memories it was given, twice, so it was "
        "not kept. Retry, or search the memory instead (GET …/memory/search).",
        "invalid_citations",
    )


def _citation(
    number: int,
    hit: MemoryHit,
    dates: dict[str, date],
    times: dict[str, tuple[float, float]],
) -> Citation:
    start, end = times.get(hit.source_id, (None, None))
    return Citation(
        number=number,
        memory_id=hit.memory_id,
        kind=hit.kind,
        source_id=hit.source_id,
        session_id=hit.session_id,
        session_date=dates[hit.session_id],
        phase=hit.phase,
        at=hit.at,
        snippet=hit.snippet,
        start_s=start,
        end_s=end,
    )
