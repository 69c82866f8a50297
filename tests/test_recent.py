"""The bounded map of what the process worked out last (companion/recent.py)."""

from __future__ import annotations

import time

from companion.recent import Recent


def test_many_keys_are_read_at_once_and_count_as_used():
    recent: Recent[int] = Recent(3)
    for n, key in enumerate("abc"):
        recent.add(key, n)
    assert recent.get_many(["a", "x", "c"]) == {"a": 0, "c": 2}
    recent.add("d", 3)  # the least recently used goes: b, not a
    assert recent.get("b") is None
    assert recent.get_many("acd") == {"a": 0, "c": 2, "d": 3}


def test_an_entry_older_than_its_age_is_not_given(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    recent: Recent[str] = Recent(10, max_age_s=60)
    recent.add("old", "x")
    now[0] += 30
    recent.add("young", "y")
    now[0] += 45
    assert recent.get_many(["old", "young"]) == {"young": "y"}
    assert recent.get("old") is None
