"""The memory outbox: what must be (re)indexed, written in the same transaction as the content.

It lives with the storage (not with the memory) so that every service that stores content can
enqueue it without depending on the memory, which sits above them.

Services call `enqueue` when they store content and `forget_group` when they delete a group;
both only touch the database and mark the session. After the commit, the application's Memory
(companion.memory.service) indexes what was marked; if it cannot, the rows stay here, with
the kind of error, until a later commit, a search of that group, or `companion memory reindex`
succeeds. Nothing here imports Chroma or a model.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.orm import Session

from companion.store.models import MemoryOutbox, new_id


class MemoryKind(StrEnum):
    """What a memory comes from. The client's draft synthesis is not one: it is the client's
    alone until they share what they keep (their contract, action plan, learning)."""

    note = "note"
    contract = "contract"
    action = "action"
    learning = "learning"
    segment = "segment"  # a transcript segment (its corrected text when edited)
    theme = "theme"  # a consultation theme: its label and its ideas, as grouped
    regulation = "regulation"  # a session's regulation points (keep / change), as last made


PENDING = "companion.memory.pending"  # session.info: group ids with new outbox rows
DROPPED = "companion.memory.dropped"  # session.info: group ids whose memory must go


def enqueue(
    db: Session, group_id: str, kind: MemoryKind | str, source_id: str, *, later: bool = False
) -> None:
    """Index (again) this source of the group's memory once the transaction commits; with
    `later`, only at the group's next write or search (background workers use it: indexing
    inside their commit would make the job wait on embeddings)."""
    # Always a new row, even if one waits already: an indexing under way may have read the
    # source before this change, and deleting its row must not lose this one.
    kind = MemoryKind(kind)
    db.add(MemoryOutbox(id=new_id(), group_id=group_id, kind=kind.value, source_id=source_id))
    if not later:
        db.info.setdefault(PENDING, set()).add(group_id)


def forget_group(db: Session, group_id: str) -> None:
    """Drop the group's memory once its deletion commits (its outbox rows go with the group)."""
    db.info.setdefault(DROPPED, set()).add(group_id)


def take_marks(db: Session) -> tuple[set[str], set[str]]:
    """The groups to index and to drop that this session marked; the marks are cleared."""
    pending: set[str] = db.info.pop(PENDING, set())
    dropped: set[str] = db.info.pop(DROPPED, set())
    return pending - dropped, dropped
