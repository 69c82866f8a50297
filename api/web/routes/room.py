"""The session room: one page that follows the running phase, and a partial per live panel.

Each panel is read through the API's own route function with the API's own access dependency
(a consultant's request for the client's draft is refused exactly as the API refuses it);
the page reloads a panel when the event stream (events.py) says its topic changed. Changes
go from the browser to the JSON API.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import (
    AppStateDep,
    AssistDep,
    DbSession,
    EmbedDep,
    KeysDep,
    SessionClient,
    SessionContext,
    SessionFacilitator,
    SessionMember,
    SessionParticipant,
)
from api.routes import assist as assist_routes
from api.routes import debrief as debrief_routes
from api.routes import ideas as ideas_routes
from api.routes import synthesis as synthesis_routes
from api.web.deps import Viewer
from api.web.render import render, render_shared
from companion.assist import debrief
from companion.assist.ideas import flows as ideas_flows
from companion.assist.ideas import service as ideas_service
from companion.assist.synthesis.schemas import SynthesisView
from companion.errors import Conflict, NotFound
from companion.method.phases import Language, Phase
from companion.sessions import changes, content
from companion.sessions import service as sessions
from companion.sessions.schemas import SessionStatus, SessionView
from companion.speech import transcript as transcripts

router = APIRouter(include_in_schema=False)

ROOM = "/groups/{group_id}/sessions/{session_id}"


def _role(db: DbSession, ctx: SessionContext) -> str:
    """client | consultant | facilitator, or member for a member outside this session."""
    return sessions.participants(db, ctx.session).get(ctx.user.id, "member")


def _page(
    request: Request,
    template: str,
    db: DbSession,
    keys: KeysDep,
    ctx: SessionContext,
    *,
    view: SessionView | None = None,
    **values: object,
) -> Response:
    """A room template with the session's view (`s`), its group, the caller's role and the
    room's path; a panel that already read the view passes it."""
    view = view or sessions.view(db, keys, ctx.group, ctx.session)
    return render(
        request,
        template,
        {"s": view, "g": ctx.group, "role": _role(db, ctx), "base": _base(ctx), **values},
        group_language=ctx.group.language,
    )


def _base(ctx: SessionContext) -> str:
    return f"/groups/{ctx.group.id}/sessions/{ctx.session.id}"


def _reached(view: SessionView, phase: Phase) -> bool:
    """Whether `phase` has started (or the session is past it)."""
    return any(p.phase is phase and p.status != "pending" for p in view.phases)


@router.get(ROOM, response_class=HTMLResponse)
def room(
    ctx: SessionMember, _viewer: Viewer, request: Request, db: DbSession, keys: KeysDep
) -> Response:
    return _page(request, "pages/room.html", db, keys, ctx)


@router.get(ROOM + "/panels/phase", response_class=HTMLResponse)
def phase_panel(ctx: SessionMember, request: Request, db: DbSession, keys: KeysDep) -> Response:
    return _page(request, "partials/room_phase.html", db, keys, ctx)


@router.get(ROOM + "/panels/work", response_class=HTMLResponse)
def work_panel(ctx: SessionMember, request: Request, db: DbSession, keys: KeysDep) -> Response:
    """Which panels the running phase shows this role (reloaded when the phase moves)."""
    view = sessions.view(db, keys, ctx.group, ctx.session)
    reached = {p.phase.value: _reached(view, p.phase) for p in view.phases}
    # The client's draft shows the moment the consultation ends, before phase 5 starts.
    consulted = any(p.phase is Phase.consultation and p.status == "done" for p in view.phases)
    return _page(
        request,
        "partials/room_work.html",
        db,
        keys,
        ctx,
        view=view,
        reached=reached,
        consulted=consulted,
    )


@router.get(ROOM + "/panels/transcript", response_class=HTMLResponse)
def transcript_panel(
    ctx: SessionMember, request: Request, db: DbSession, keys: KeysDep
) -> Response:
    """The session's transcript; everyone who may correct it sees the same, as do the others.
    Rendered once per change for them all: each live pass reloads it on every page at once."""
    session = ctx.session
    correctable = _role(db, ctx) != "member" and sessions.status(session) != SessionStatus.closed
    key = f"{session.id}|{correctable}|{changes.transcript_fingerprint(db, session.id)}"

    def values() -> dict[str, object]:
        found = transcripts.transcript(db, keys, session, None)
        return {"transcript": found, "correctable": correctable, "base": _base(ctx)}

    return render_shared(
        request, "partials/room_transcript.html", key, values, group_language=ctx.group.language
    )


@router.get(ROOM + "/panels/notes", response_class=HTMLResponse)
def notes_panel(ctx: SessionMember, request: Request, db: DbSession, keys: KeysDep) -> Response:
    """The running phase's notes; everyone in the session sees the same."""
    session = ctx.session
    running = sessions.state(session).running
    key = f"{session.id}|{running}|{content.notes_digest(db, session, running)}"

    def values() -> dict[str, object]:
        return {"notes": content.notes(db, keys, session, running) if running else []}

    return render_shared(
        request, "partials/room_notes.html", key, values, group_language=ctx.group.language
    )


@router.get(ROOM + "/panels/clarity", response_class=HTMLResponse)
def clarity_panel(
    ctx: SessionFacilitator,
    request: Request,
    db: DbSession,
    keys: KeysDep,
    *,
    state: AppStateDep,
    assist: AssistDep,
    background: BackgroundTasks,
    part: Literal["all", "alerts"] = "all",
) -> Response:
    clarity = assist_routes.clarity_prompts(ctx, db, keys, state, assist, background)
    return _page(request, "partials/room_clarity.html", db, keys, ctx, clarity=clarity, part=part)


@router.get(ROOM + "/panels/contract", response_class=HTMLResponse)
def contract_panel(ctx: SessionMember, request: Request, db: DbSession, keys: KeysDep) -> Response:
    try:
        confirmed = content.contract(db, keys, ctx.session)
    except NotFound:  # not confirmed yet
        confirmed = None
    return _page(request, "partials/room_contract.html", db, keys, ctx, contract=confirmed)


@router.get(ROOM + "/panels/ideas", response_class=HTMLResponse)
def ideas_panel(
    ctx: SessionMember,
    request: Request,
    db: DbSession,
    keys: KeysDep,
    embed: EmbedDep,
    assist: AssistDep,
) -> Response:
    """The ideas in their themes; the facilitator's copy has the tools to correct them."""
    movable = _role(db, ctx) == "facilitator" and ctx.session.closed_at is None
    try:
        if not assist.running:  # no runner to keep them current: brought up to date here
            ideas_routes.ideas(ctx, db, keys, embed)
        # Every open page reloads this panel after each change: it reads what the runner
        # stored, and the runner's next store moves the `ideas` topic again. The runner hears
        # of each note and transcript; it is asked here only for a session it has not seen
        # since this process started (each page's poke had it read the session every time).
        key, found = ideas_flows.stored(db, keys, ctx.session)
        if not ideas_service.freshness.knows(ctx.session.id):
            assist.poke(ctx.session.id)
    except Conflict:
        key, found = "none", None
    values = {"ideas": found, "movable": movable, "base": _base(ctx)}
    return render_shared(
        request,
        "partials/room_ideas.html",
        f"{ctx.session.id}|{movable}|{key}",
        lambda: values,
        group_language=ctx.group.language,
    )


@router.get(ROOM + "/panels/synthesis", response_class=HTMLResponse)
def synthesis_panel(
    ctx: SessionClient, request: Request, state: AppStateDep, db: DbSession, keys: KeysDep
) -> Response:
    """The client's draft: the outline at once, the model's part when made."""
    draft: SynthesisView | None = None
    why: str | None = None
    try:
        draft = synthesis_routes.read_synthesis(ctx, state, db, keys)
    except Conflict as exc:
        why = str(exc)
    return _page(request, "partials/room_synthesis.html", db, keys, ctx, draft=draft, why=why)


@router.get(ROOM + "/panels/plan", response_class=HTMLResponse)
def plan_panel(ctx: SessionMember, request: Request, db: DbSession, keys: KeysDep) -> Response:
    """The action plan as confirmed so far (everyone in the group sees it, as in the API)."""
    plan = content.action_plan(db, keys, ctx.session)
    return _page(request, "partials/room_plan.html", db, keys, ctx, plan=plan)


@router.get(ROOM + "/panels/learnings", response_class=HTMLResponse)
def learnings_panel(
    ctx: SessionParticipant,
    request: Request,
    db: DbSession,
    keys: KeysDep,
    part: Literal["form", "view"] = "view",
) -> Response:
    role = _role(db, ctx)
    questions = debrief.questions(Language(ctx.group.language), role)
    found = content.learnings(db, keys, ctx.session)
    mine = next((item for item in found.learnings if item.author.user_id == ctx.user.id), None)
    regulation = debrief_routes.get_regulation(ctx, db, keys) if role == "facilitator" else None
    return _page(
        request,
        "partials/room_learnings.html",
        db,
        keys,
        ctx,
        questions=questions,
        learnings=found,
        mine=mine,
        regulation=regulation,
        part=part,
    )
