"""An idea's text, vector and words, opened once in this process.

An idea never changes under its id (a corrected turn is cut again into ideas with new ids;
a correction moves an idea, which is its theme, not its content), so what opening and
reading it gives is kept by id. After each note, the refresh, the label check and the view
each read every idea of the session: opening and tokenising them all again was most of a
grown session's cost per note (bench/load.py, a py-spy profile of 110 ideas).

Kept in this process's memory only, like the views it feeds, for at most ten minutes unused;
an entry is given only for the group it was opened with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from companion.assist.ideas.labels import Tokens, tokens
from companion.recent import Recent
from companion.store.keyring import Keyring
from companion.store.models import Idea


@dataclass(frozen=True)
class Opened:
    group_id: str
    text: str
    vector: np.ndarray  # the unit vector the idea was placed with (read-only)
    words: Tokens  # its words as labels compare them (companion/assist/ideas/labels.py)


# Ideas of the sessions being worked on: a few hundred each, ~3 KB an entry.
_opened: Recent[Opened] = Recent(16_384, max_age_s=600)


def remember(group_id: str, idea_id: str, text: str, vector: np.ndarray) -> Opened:
    """What an idea just made holds (it is sealed from these)."""
    kept = vector.copy()
    kept.flags.writeable = False
    found = Opened(group_id, text, kept, tokens(text))
    _opened.add(idea_id, found)
    return found


def known(group_id: str, idea_id: str) -> Opened | None:
    """The idea as opened before, if it was, for this group."""
    found = _opened.get(idea_id)
    return found if found is not None and found.group_id == group_id else None


def known_of(group_id: str, ids: Iterable[str]) -> dict[str, Opened]:
    """Those of these ideas opened before, for this group (idea id -> what it holds)."""
    return {i: o for i, o in _opened.get_many(ids).items() if o.group_id == group_id}


def of_rows(keys: Keyring, group_id: str, ideas: Iterable[Idea]) -> dict[str, Opened]:
    """These stored ideas opened from their sealed columns (the caller found them unknown)."""
    found = {}
    for idea in ideas:
        text = keys.open(group_id, idea, "text")
        raw = keys.get(group_id).open(idea.vector_sealed, Idea.__tablename__, idea.id, "vector")
        found[idea.id] = remember(group_id, idea.id, text, np.frombuffer(raw, dtype=np.float32))
    return found
