"""The client's draft synthesis: read it, have it made now, follow it as a stream, export it.

For the client only: the synthesis is theirs to edit before they share anything.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session

from api.deps import DbSession, KeysDep, SessionClient, app_state
from api.state import AppState
from companion.assist.ideas import service as ideas
from companion.assist.synthesis import export
from companion.assist.synthesis import service as synthesis
from companion.assist.synthesis.schemas import SynthesisView
from companion.llm.errors import ModelError
from companion.method.phases import Language
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])

PROGRESS_S = 1.0  # how often the stream says how far the model has written


def _current(
    state: AppState, db: Session, keys: Keyring, session: CodevSession, language: Language
) -> SynthesisView:
    embed = state.embed()
    ideas.require_consultation(session)
    with ideas.session_lock(session.id):
        ideas.refresh(db, keys, session, language, embed)
        db.commit()
    found = synthesis.inputs(db, keys, session, language)
    synthesis.require_ideas(found)
    return synthesis.view(
        db, keys, session, found, embed, model_configured=state.model_configured()
    )


def _make(state: AppState, session_id: str) -> SynthesisView:
    """Make the model's part now unless a current one is stored; waits for a run under way
    (the background runner's) rather than starting a second one. Its own transaction."""
    with state.sessions() as db:
        keys = Keyring(db, state.master)
        session = db.get(CodevSession, session_id)
        group = db.get(Group, session.group_id) if session is not None else None
        assert session is not None
        assert group is not None
        language = Language(group.language)
        embed = state.embed()
        with synthesis.compose_lock(session_id):
            found = synthesis.inputs(db, keys, session, language)
            synthesis.require_ideas(found)
            row = synthesis.stored(db, session)
            if row is None or row.basis != found.basis or row.status != "ready":
                try:
                    synthesis.make_draft(db, keys, state.llm(), group, session, found)
                finally:
                    db.commit()  # the failure is stored too: the client sees why
                found = synthesis.inputs(db, keys, session, language)  # with the new labels
        return synthesis.view(
            db, keys, session, found, embed, model_configured=state.model_configured()
        )


@router.get(
    "/synthesis",
    responses={409: {"description": "No consultation or no ideas yet."}},
)
def read_synthesis(
    ctx: SessionClient, request: Request, db: DbSession, keys: KeysDep
) -> SynthesisView:
    """The draft as it stands: the outline (contract, themes, what is closest to the contract)
    at once, and the model's part as last made (`current` says whether it covers every idea).
    """
    return _current(app_state(request), db, keys, ctx.session, Language(ctx.group.language))


@router.post(
    "/synthesis",
    responses={
        409: {"description": "No consultation or no ideas yet."},
        502: {"description": "The model's answer failed its checks twice; retry."},
        503: {"description": "No model configured, or the model server is down."},
    },
)
def make_synthesis(
    ctx: SessionClient, request: Request, db: DbSession, keys: KeysDep
) -> SynthesisView:
    """Make the model's part now if it is not current (it usually is: it is made in the
    background while phase 4 runs), and return the whole draft."""
    state = app_state(request)
    _current(state, db, keys, ctx.session, Language(ctx.group.language))
    return _make(state, ctx.session.id)


def _outline(
    ctx: SessionClient, request: Request, response: Response, db: DbSession, keys: KeysDep
) -> SynthesisView:
    """The draft as it stands, read before the stream starts (so a 409 is a plain answer)."""
    response.headers["Cache-Control"] = "no-store"  # the client's draft: kept by no cache
    return _current(app_state(request), db, keys, ctx.session, Language(ctx.group.language))


@router.get(
    "/synthesis/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."},
        409: {"description": "No consultation or no ideas yet."},
    },
)
def stream_synthesis(
    session_id: str, request: Request, first: Annotated[SynthesisView, Depends(_outline)]
) -> Iterator[ServerSentEvent]:
    """Server-sent events: `outline` at once (a SynthesisView without a current model part),
    `progress` ({written}: about how many tokens the model has written) every second while it
    writes, then `draft` (the complete SynthesisView) when the model's part is current, or
    `error` ({status, detail}) if it cannot be made; `done` closes. While the model is quiet
    FastAPI sends a keep-alive comment every 15 s, so proxies keep the stream open."""
    state = app_state(request)  # `_outline` checked the access: the client of this session
    yield ServerSentEvent(event="outline", data=first)
    if first.current or first.status == "no_model":
        yield ServerSentEvent(event="draft", data=first)
        yield ServerSentEvent(event="done", data={})
        return
    results: queue.Queue[SynthesisView | ModelError | Exception] = queue.Queue()

    def work() -> None:
        try:
            results.put(_make(state, session_id))
        except Exception as exc:  # reported to the client below
            results.put(exc)

    threading.Thread(target=work, name="synthesis-stream", daemon=True).start()
    shown = None
    while True:
        try:
            outcome = results.get(timeout=PROGRESS_S)
        except queue.Empty:
            written = synthesis.writing(session_id)  # this run's, or the runner's
            if written is not None and written != shown:
                shown = written
                yield ServerSentEvent(event="progress", data={"written": written})
            continue
        break
    if isinstance(outcome, SynthesisView):
        yield ServerSentEvent(event="draft", data=outcome)
    else:
        status = getattr(outcome, "status", 500)
        detail = str(outcome) if status != 500 else "The draft could not be made."
        yield ServerSentEvent(event="error", data={"status": status, "detail": detail})
    yield ServerSentEvent(event="done", data={})


@router.get(
    "/synthesis/export",
    response_class=Response,
    responses={
        200: {
            "content": {"text/markdown": {}, "application/pdf": {}},
            "description": "The draft as a file.",
        },
        409: {"description": "No consultation or no ideas yet."},
    },
)
def export_synthesis(
    ctx: SessionClient,
    request: Request,
    db: DbSession,
    keys: KeysDep,
    format: Literal["markdown", "pdf"] = "markdown",
) -> Response:
    """The draft as it stands, as Markdown or PDF (say so in the file when it is not current)."""
    language = Language(ctx.group.language)
    view = _current(app_state(request), db, keys, ctx.session, language)
    name = f"synthesis-{ctx.session.id[:8]}"
    headers = {"Cache-Control": "no-store"}
    if format == "pdf":
        headers["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return Response(export.pdf(view, language), media_type="application/pdf", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}.md"'
    return Response(
        export.markdown(view, language), media_type="text/markdown; charset=utf-8", headers=headers
    )
