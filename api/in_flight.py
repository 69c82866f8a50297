"""As many requests at once as there are threads and connections for them; the others wait
their turn here, holding nothing.

A request holds a database connection from its first query until its teardown, and the
teardown of a synchronous route runs in a worker thread: with more requests in flight than
threads, requests that hold connections can wait for a thread while the threads wait for a
connection. Bounding requests in flight to `COMPANION_REQUEST_THREADS` (the pool has a
connection for each, companion/store/db.py) removes the wait. Long answers (a page's event
stream, live WebSockets) are not counted: they hold no connection while they last.
"""

from __future__ import annotations

import asyncio
import weakref

from starlette.types import ASGIApp, Receive, Scope, Send

LASTING = ("/events",)  # path endings of streams that stay open


class InFlight:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        # One semaphore per event loop (tests run an app on more than one).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._slots = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith(LASTING):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        async with slots:
            await self.app(scope, receive, send)
