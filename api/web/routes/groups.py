"""A group's home: how past action plans are going, its members, cycle and sessions, and its
memory. Read through the services the API routes call, with the same `GroupMember` access;
every change goes to the JSON API from the page (facilitator forms are only shown to
facilitators, and the API refuses them to anyone else anyway)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import DbSession, GroupMember, KeysDep, memory_of
from api.web.deps import Viewer
from api.web.render import language, render
from companion.assist import followup
from companion.cycles import service as cycles
from companion.errors import DomainError
from companion.groups import service as groups
from companion.groups.schemas import Role
from companion.memory.schemas import MemoryKind
from companion.memory.service import Filters
from companion.method.phases import PHASES, Language
from companion.sessions import service as sessions
from companion.sessions.schemas import SessionStatus

router = APIRouter(include_in_schema=False)

MEMORY_KINDS = [kind.value for kind in MemoryKind]


def _search(
    request: Request, db: DbSession, keys: KeysDep, group_id: str, q: str
) -> dict[str, Any]:
    """What GET …/memory/search answers, or why it cannot (the memory may be off or down).

    The memory is looked up here, not declared as `MemoryDep`: the page shows without it."""
    try:
        memory = memory_of(request)
        found = memory.search(db, keys, group_id=group_id, query=q, filters=Filters(), limit=10)
    except DomainError as exc:
        return {"query": q, "hits": None, "problem": str(exc)}
    return {"query": q, "hits": found.hits, "pending": found.pending, "problem": None}


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(
    request: Request,
    me: Viewer,
    ctx: GroupMember,
    db: DbSession,
    keys: KeysDep,
    *,
    q: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    group = ctx.group
    lang = Language(language(request, group.language))
    facilitator = ctx.role is Role.facilitator
    members = groups.members(db, keys, group)
    cycle = cycles.open_cycle(db, group)
    rotation = cycles.proposal(db, keys, group, cycle) if cycle is not None else None
    views = [sessions.view(db, keys, group, s) for s in sessions.sessions_of(db, group)]
    context = {
        "group": groups.view(keys, group, ctx.role),
        "facilitator": facilitator,
        "members": members,
        # A facilitator may make new links for the members who are not administrators.
        "invitable": groups.invitable(db, group) if (facilitator or me.is_admin) else set(),
        "follow": followup.follow_up(db, keys, group),
        "cycle": cycles.view(db, cycle) if cycle is not None else None,
        "cycle_count": len(cycles.cycles(db, group)),
        "rotation": rotation,
        "upcoming": [s for s in views if s.status is not SessionStatus.closed],
        "past": [s for s in reversed(views) if s.status is SessionStatus.closed],
        "search": _search(request, db, keys, group.id, q) if q and q.strip() else None,
        "memory_kinds": MEMORY_KINDS,
        "phase_titles": {p.value: p.info.title[lang] for p in PHASES},
        # Who came to read the group by a door its facilitators should know of.
        "notices": groups.access_notices(db, keys, group) if facilitator else [],
    }
    return render(request, "pages/group.html", context, group_language=group.language)
