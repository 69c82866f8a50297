"""One lock per co-development session, within this process."""

from __future__ import annotations

import threading


class SessionLocks:
    """Hands out the lock of a session, made on first use, so that one piece of work runs at a
    time per session in this process (the request and the background runner may both ask);
    across processes, each caller's own storage keys protect."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, session_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(session_id, threading.Lock())
