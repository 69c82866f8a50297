"""The room's live updates: server-sent events, one per topic that changed.

Each open page holds one stream. Every api.web.watch.POLL_S the session's fingerprints
(companion.sessions.changes) are read in a short transaction, once for all the session's
streams in this process (api/web/watch.py), and each stream sends an event named after each
topic that moved; the page's panels reload on their topic. The first read sends every topic, so
a page that reconnects after a drop catches up on whatever it missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import AppStateDep, SessionMemberBriefly
from api.web.watch import watching
from companion.groups import service as groups
from companion.sessions import changes

router = APIRouter(include_in_schema=False)

RECHECK_S = 10.0  # how often a stream checks that its person is still in the group
RETRY_MS = 2000  # the browser's wait before it reconnects


@router.get("/groups/{group_id}/sessions/{session_id}/events", response_class=EventSourceResponse)
async def session_events(
    ctx: SessionMemberBriefly, state: AppStateDep, request: Request
) -> AsyncIterator[ServerSentEvent]:
    session_id, group_id, user_id = ctx.session_id, ctx.group_id, ctx.user_id

    def read() -> dict[str, str]:
        with state.sessions() as db:
            return changes.fingerprints(db, session_id)

    def still_member() -> bool:
        with state.sessions() as db:
            return groups.membership(db, group_id, user_id) is not None

    seen: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    checked = loop.time()
    yield ServerSentEvent(event="hello", data={"topics": list(changes.TOPICS)}, retry=RETRY_MS)
    async with watching(session_id, read) as watch:
        delay = watch.slot()
        while not await request.is_disconnected():
            await watch.changed()
            if seen and watch.latest != seen:  # not the first read: this page's turn
                await asyncio.sleep(delay)
            now = watch.latest
            for topic, value in now.items():
                if seen.get(topic) != value:
                    yield ServerSentEvent(event=topic, data={"topic": topic})
            seen = dict(now)
            if loop.time() - checked > RECHECK_S:
                checked = loop.time()
                if not await run_in_threadpool(still_member):
                    yield ServerSentEvent(event="gone", data={"topic": "gone"})
                    return
