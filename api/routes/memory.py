"""Search a group's memory, or ask it a question.

The application's Memory (made in api/main.py's lifespan) indexes, after each commit, what the
services put in the outbox (notes, contracts, actions, learnings) and drops the memory of a
deleted group; it loads Chroma and the embedding model on first use only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AppStateDep, DbSession, GroupMember, KeysDep, MemoryDep
from api.responses import MODEL_FAILED, unavailable
from companion.assist import ask
from companion.errors import Invalid
from companion.memory.schemas import MemoryKind, MemoryQuery, MemorySearchView
from companion.memory.service import Filters

router = APIRouter(prefix="/groups/{group_id}/memory", tags=["memory"])


def _when(name: str, value: str | None) -> date | datetime | None:
    """A day (YYYY-MM-DD) or a moment (ISO 8601; without a zone: UTC)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            f"{name} must be a date (2030-01-31) or a time (2030-01-31T14:00:00Z), not {text!r}."
        ) from None


@router.get("/search")
def search_memory(
    ctx: GroupMember,
    memory: MemoryDep,
    db: DbSession,
    keys: KeysDep,
    *,
    q: Annotated[MemoryQuery, Query(description="What to look for, in French or English.")],
    kind: Annotated[MemoryKind | None, Query(description="Only this kind of memory.")] = None,
    session_id: Annotated[str | None, Query(description="Only this session's memories.")] = None,
    since: Annotated[
        str | None, Query(description="Written on or after: YYYY-MM-DD or an ISO 8601 time.")
    ] = None,
    until: Annotated[
        str | None,
        Query(description="Written on or before: YYYY-MM-DD (that day included) or a time."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="How many hits at most.")] = 10,
) -> MemorySearchView:
    """The group's memories closest in meaning to `q`, opened, with where they come from.

    Only the caller's group is searched (its own collection). Snippets are decrypted here;
    Chroma only ever holds sealed documents and rotated vectors. 503 when the memory store is
    unavailable (nothing is lost: content waiting to be indexed is indexed once it is back).
    """
    filters = Filters(
        kind=kind,
        session_id=session_id,
        since=_when("since", since),
        until=_when("until", until),
    )
    return memory.search(db, keys, group_id=ctx.group.id, query=q, filters=filters, limit=limit)


@router.post(
    "/ask",
    responses={
        422: {"description": "Empty or too long question, or a bad filter."},
        **MODEL_FAILED,
        **unavailable("Memory store or model down."),
    },
)
def ask_memory(
    ctx: GroupMember,
    memory: MemoryDep,
    state: AppStateDep,
    db: DbSession,
    keys: KeysDep,
    *,
    body: ask.MemoryQuestion,
) -> ask.MemoryAnswer:
    """An answer to a question about the group's past, from its own memories only, each
    citation one of them (kind, session and its date, source id, snippet; for a transcript
    segment, its times). `found` is false, and no model is asked, when the memory holds
    nothing on it. Any member of the group may ask.
    """
    ask.check_question(body.question, state.settings)
    filters = Filters(
        kind=body.kind,
        session_id=body.session_id,
        since=_when("since", body.since),
        until=_when("until", body.until),
    )
    return ask.answer(
        db,
        keys,
        memory=memory,
        llm=state.llm,
        group=ctx.group,
        question=body.question,
        filters=filters,
        limit=body.limit,
    )
