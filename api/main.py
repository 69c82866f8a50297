"""The application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import errors, responses
from api.access_log import AccessLog
from api.idempotency import Idempotency
from api.in_flight import InFlight
from api.limits import BodyLimit
from api.routes import (
    action_plan,
    assist,
    audit,
    contract,
    cycles,
    debrief,
    followup,
    groups,
    health,
    ideas,
    invitations,
    learnings,
    live,
    members,
    memory,
    model_calls,
    notes,
    phases,
    queue,
    sessions,
    synthesis,
    transcripts,
    users,
)
from api.state import AppState
from api.web import render
from api.web.routes import admin as admin_pages
from api.web.routes import events, home, room, signin
from api.web.routes import groups as group_pages
from api.web.security import SecurityHeaders
from companion.assist.ideas.service import IdeasUnavailable
from companion.assist.synthesis.runner import AssistRunner
from companion.config import Settings, get_settings
from companion.memory.service import Memory
from companion.runtime import open_store
from companion.speech import transcriber
from companion.speech.queue import TranscriptionService

API_PREFIX = "/api/v1"

# The web app's pages, at the root.
PAGES = (
    signin.router,
    home.router,
    room.router,
    events.router,
    group_pages.router,
    admin_pages.router,
)

# Every resource router, mounted under API_PREFIX (health stays at the root).
ROUTERS = (
    users.router,
    invitations.router,
    groups.router,
    members.router,
    cycles.router,
    sessions.router,
    phases.router,
    notes.router,
    contract.router,
    action_plan.router,
    learnings.router,
    audit.router,
    model_calls.router,
    assist.router,
    followup.router,
    debrief.router,
    memory.router,
    transcripts.router,
    ideas.router,
    synthesis.router,
    live.router,
    queue.router,
)


def _freeze_heap(state: AppState) -> None:
    """Load the embedding model now, then set everything loaded so far apart from the
    collector: its full passes walked ~420,000 objects of models and modules and stopped
    every request for ~0.3 s (measured under bench/load.py); they walk what requests make."""
    with suppress(IdeasUnavailable):  # said when first used; the heap is frozen all the same
        state.embed()(["warm-up"])
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, freeze_heap: bool = False) -> FastAPI:
    """The application; `freeze_heap` (companion serve) after start-up (_freeze_heap)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # As many requests at once in threads as the database pool has connections for them
        # (companion/store/db.py); more would only queue on the pool and the cores.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        store = open_store(settings)
        state = AppState(settings, store.engine, store.sessions, store.master)
        app.state.companion = state
        # Indexes what each commit put in the outbox; off, its routes answer 503 (api.deps).
        memory = Memory(settings, store.sessions, store.master) if settings.memory.enabled else None
        if memory is not None:
            memory.install()
            memory.heal_in_background()  # a lost or older Chroma directory is rebuilt
        app.state.memory = memory
        if settings.llm.local_preload:
            state.preload()
        speech = TranscriptionService(settings, store.sessions, store.master)
        app.state.transcription = speech
        speech.start()
        assist = AssistRunner(
            settings,
            store.sessions,
            master=store.master,
            embed=state.embed,
            llm=state.llm,
            model_configured=state.model_configured,
        )
        app.state.assist = assist
        if settings.assist.background:
            assist.start()
        if freeze_heap:
            _freeze_heap(state)
            if settings.speech.preload:
                transcriber.preload(settings)
        try:
            yield
        finally:
            app.state.memory = None  # requests still running get a 503, not a closed store
            if memory is not None:
                memory.close()
        assist.stop()
        speech.close()
        state.close()  # ends a model call the runner may be waiting on
        assist.join()

    app = FastAPI(
        title="Codev Companion",
        version="0.1.0",
        summary="Accompanies professional co-development groups; everything sealed per group.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(Idempotency)  # inside BodyLimit: a retried body is bounded too
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        max_text_chars=settings.max_text_chars,
        uploads=(transcripts.UPLOAD_PATH, settings.speech.max_upload_bytes),
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(InFlight, limit=settings.request_threads)  # the others wait here
    app.add_middleware(AccessLog)  # outermost: it sees every answer, refusals included
    app.include_router(health.router)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    app.mount("/static", StaticFiles(directory=render.WEB / "static"), name="static")
    for page in PAGES:
        app.include_router(page)
    responses.document_errors(app)  # the errors each operation can answer, in the spec
    return app
