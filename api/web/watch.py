"""One watch per session for every open page of it in this process.

A page's event stream (api/web/routes/events.py) needs the session's fingerprints every
POLL_S; read once per session and shared, twenty open pages cost the database what one does.
The watch starts with the first stream of a session and stops with its last.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

POLL_S = 0.3  # a change shows on open pages within about this long, plus the panel's reload
# The pages of a session hear of a change one after another, SPREAD_S / SLOTS apart, rather
# than all at once: six pages reloading three panels each at the same instant made every
# request wait on the others (measured in bench/load.py), one after another each runs alone.
SPREAD_S = 0.24
SLOTS = 8

Read = Callable[[], dict[str, str]]


@dataclass
class Watch:
    """The latest fingerprints of one session; `changed()` waits for the next read."""

    latest: dict[str, str] = field(default_factory=dict)
    streams: int = 0
    joined: int = 0  # streams that came so far: each takes the next slot
    _tick: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def changed(self) -> None:
        """Until the fingerprints are read again, or a few polls (to notice a closed page)."""
        tick = self._tick
        with suppress(TimeoutError):
            await asyncio.wait_for(tick.wait(), 4 * POLL_S)

    def slot(self) -> float:
        """The delay after a change for the stream that joins now (see SPREAD_S)."""
        self.joined += 1
        return (self.joined - 1) % SLOTS * SPREAD_S / SLOTS

    async def run(self, read: Read) -> None:
        while True:
            try:
                self.latest = await run_in_threadpool(read)
            except Exception as exc:  # the database is away: the pages keep what they show
                log.warning("Reading a session's changes failed (%s)", type(exc).__name__)
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()
            await asyncio.sleep(POLL_S)


# Per event loop: an application served by one loop, tests' clients each by their own.
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Watch]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def watching(session_id: str, read: Read) -> AsyncIterator[Watch]:
    """The session's watch, started for the first stream and stopped after the last."""
    watches = _watches.setdefault(asyncio.get_running_loop(), {})
    watch = watches.get(session_id)
    if watch is None:
        watch = watches[session_id] = Watch()
        watch._task = asyncio.create_task(watch.run(read))
    watch.streams += 1
    try:
        yield watch
    finally:
        watch.streams -= 1
        if watch.streams == 0:
            if watches.get(session_id) is watch:
                del watches[session_id]
            if watch._task is not None:
                watch._task.cancel()
