"""A bounded map of what this process worked out last, least recently used out first.

Used for what is costly to read or compute again and cheap to recognise: verified tokens,
people's names, sentence embeddings, the ideas of a session as last grouped. It lives in the
process's memory only (nothing of it is written anywhere); `max_age_s` bounds how long an
entry that is never asked for again stays there.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class Recent(Generic[V]):
    def __init__(self, size: int, max_age_s: float | None = None) -> None:
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._size = size
        self._max_age_s = max_age_s
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if self._max_age_s is not None and time.monotonic() - found[0] > self._max_age_s:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return found[1]

    def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """`get` of each key (those found), under one hold of the lock."""
        now = time.monotonic()
        found: dict[str, V] = {}
        with self._lock:
            for key in keys:
                item = self._items.get(key)
                if item is None:
                    continue
                if self._max_age_s is not None and now - item[0] > self._max_age_s:
                    del self._items[key]
                    continue
                self._items.move_to_end(key)
                found[key] = item[1]
        return found

    def add(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            if self._max_age_s is not None:  # the oldest first: stop at the first still young
                limit = time.monotonic() - self._max_age_s
                while self._items and next(iter(self._items.values()))[0] < limit:
                    self._items.popitem(last=False)
