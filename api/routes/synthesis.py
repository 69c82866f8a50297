"""The client's draft synthesis: read it, have it made now, follow it as a stream, export it.

For the client only: the synthesis is theirs to edit before they share anything.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import AppStateDep, DbSession, KeysDep, SessionClient
from api.responses import MODEL_CALL, conflict
from companion.assist.synthesis import export, runs
from companion.assist.synthesis import service as synthesis
from companion.assist.synthesis.schemas import SynthesisView
from companion.llm.errors import ModelError
from companion.method.phases import Language

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["assistance"])

PROGRESS_S = 1.0  # how often the stream says how far the model has written
NO_IDEAS = conflict("No consultation or no ideas yet.")


@router.get("/synthesis", responses=NO_IDEAS)
def read_synthesis(
    ctx: SessionClient, state: AppStateDep, db: DbSession, keys: KeysDep
) -> SynthesisView:
    """The draft as it stands: the outline (contract, themes, what is closest to the contract)
    at once, and the model's part as last made (`current` says whether it covers every idea).
    """
    return synthesis.current_view(state, db, keys, ctx.session, Language(ctx.group.language))


@router.post("/synthesis", responses={**NO_IDEAS, **MODEL_CALL})
def make_synthesis(
    ctx: SessionClient, state: AppStateDep, db: DbSession, keys: KeysDep
) -> SynthesisView:
    """Make the model's part now if it is not current (it usually is: it is made in the
    background while phase 4 runs), and return the whole draft."""
    return synthesis.make_now(state, db, keys, ctx.session, Language(ctx.group.language))


def _outline(
    ctx: SessionClient, state: AppStateDep, response: Response, db: DbSession, keys: KeysDep
) -> SynthesisView:
    """The draft as it stands, read before the stream starts (so a 409 is a plain answer)."""
    response.headers["Cache-Control"] = "no-store"  # the client's draft: kept by no cache
    return synthesis.current_view(state, db, keys, ctx.session, Language(ctx.group.language))


@router.get(
    "/synthesis/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."},
        **NO_IDEAS,
    },
)
def stream_synthesis(
    session_id: str, state: AppStateDep, first: Annotated[SynthesisView, Depends(_outline)]
) -> Iterator[ServerSentEvent]:
    """Server-sent events: `outline` at once (a SynthesisView without a current model part),
    `progress` ({written}: about how many tokens the model has written) every second while it
    writes, then `draft` (the complete SynthesisView) when the model's part is current, or
    `error` ({status, detail}) if it cannot be made; `done` closes. While the model is quiet
    FastAPI sends a keep-alive comment every 15 s, so proxies keep the stream open."""
    # `_outline` checked the access: the client of this session.
    yield ServerSentEvent(event="outline", data=first)
    if first.current or first.status == "no_model":
        yield ServerSentEvent(event="draft", data=first)
        yield ServerSentEvent(event="done", data={})
        return
    results: queue.Queue[SynthesisView | ModelError | Exception] = queue.Queue()

    def work() -> None:
        try:
            results.put(synthesis.draft_now(state, session_id))
        except Exception as exc:  # reported to the client below
            results.put(exc)

    threading.Thread(target=work, name="synthesis-stream", daemon=True).start()
    shown = None
    while True:
        try:
            outcome = results.get(timeout=PROGRESS_S)
        except queue.Empty:
            written = runs.writing(session_id)  # this run's, or the runner's
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
        **NO_IDEAS,
    },
)
def export_synthesis(
    ctx: SessionClient,
    state: AppStateDep,
    db: DbSession,
    keys: KeysDep,
    format: Literal["markdown", "pdf"] = "markdown",
) -> Response:
    """The draft as it stands, as Markdown or PDF (say so in the file when it is not current)."""
    language = Language(ctx.group.language)
    view = synthesis.current_view(state, db, keys, ctx.session, language)
    name = f"synthesis-{ctx.session.id[:8]}"
    headers = {"Cache-Control": "no-store"}
    if format == "pdf":
        headers["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return Response(export.pdf(view, language), media_type="application/pdf", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}.md"'
    return Response(
        export.markdown(view, language), media_type="text/markdown; charset=utf-8", headers=headers
    )
