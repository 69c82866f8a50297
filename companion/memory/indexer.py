"""Indexing off the request: a commit that stored content hands its groups to one thread,
which embeds and writes them to Chroma while the request answers.

The outbox (companion/store/outbox.py) holds the work in the database, so nothing is lost if
the process stops first; a search drains its group's outbox before it reads, so it never
misses what was committed before it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

# How long the thread waits, once woken, for more of a busy room's notes: one Chroma write for
# them all (a write holds the interpreter's lock while it runs, and every request waits).
GATHER_S = 1.0


class Indexer:
    """One background thread that runs `index(group_id)` for each group it was handed."""

    def __init__(self, index: Callable[[str], object], gather_s: float = GATHER_S) -> None:
        self._index = index
        self._gather_s = gather_s
        self._hurry = False  # settle() wants it done now
        self._waiting: list[str] = []  # in the order handed, each once
        self._busy = False
        self._stopped = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def hand(self, group_ids: Iterable[str]) -> None:
        with self._cond:
            if self._stopped:
                return
            for gid in group_ids:
                if gid not in self._waiting:
                    self._waiting.append(gid)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="memory-indexer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def settle(self, timeout: float = 30.0) -> bool:
        """Until every group handed so far is indexed (for tests and the CLI); False on timeout."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: not self._waiting and not self._busy, timeout)
            self._hurry = False
            return done

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._stopped)
                # A moment for more: one write for several notes of a busy room.
                self._cond.wait_for(lambda: self._stopped or self._hurry, self._gather_s)
                if self._stopped:
                    return
                taken, self._waiting = self._waiting, []
                self._busy = True
            try:
                for gid in taken:
                    try:
                        self._index(gid)
                    except Exception:
                        log.exception("Indexing group %s failed; its outbox keeps the work.", gid)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
