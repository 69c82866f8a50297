"""What goes into a group's memory, read from the database (where it is sealed) and opened.

One memory per note, contract, action (with its progress notes), learning, transcript segment,
consultation theme (its label, then its ideas) and regulation summary (its points); its id is '<kind>-<source id>', so indexing
the same source again replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.memory.schemas import MemoryKind
from companion.method.phases import Phase
from companion.store.keyring import Keyring
from companion.store.models import (
    Action,
    ActionProgress,
    CodevSession,
    Contract,
    Group,
    Idea,
    Learning,
    Note,
    RegulationSummary,
    Theme,
    TranscriptionJob,
    TranscriptSegment,
)


@dataclass(frozen=True)
class MemoryItem:
    group_id: str
    kind: MemoryKind
    source_id: str
    session_id: str
    phase: str
    author_id: str | None
    at: datetime
    text: str

    @property
    def memory_id(self) -> str:
        return memory_id(self.kind, self.source_id)


def memory_id(kind: MemoryKind | str, source_id: str) -> str:
    return f"{MemoryKind(kind).value}-{source_id}"


_LABELS = {
    "fr": ("Objectif", "Premier pas", "Indicateur", "Avancement"),
    "en": ("Objective", "First step", "Indicator", "Progress"),
}


def _note(keys: Keyring, group_id: str, note: Note) -> MemoryItem:
    return MemoryItem(
        group_id,
        MemoryKind.note,
        note.id,
        note.session_id,
        note.phase,
        note.author_id,
        note.created_at,
        keys.open(group_id, note, "body"),
    )


def _contract(keys: Keyring, group_id: str, row: Contract) -> MemoryItem:
    return MemoryItem(
        group_id,
        MemoryKind.contract,
        row.id,
        row.session_id,
        "contract",
        row.confirmed_by,
        row.confirmed_at,
        keys.open(group_id, row, "text"),
    )


def _action(db: Session, keys: Keyring, group: Group, action: Action) -> MemoryItem:
    # The objective leads, unlabelled: it is what a search should match first.
    _, first_step, indicator, progress = _LABELS.get(group.language, _LABELS["en"])
    lines = [
        keys.open(group.id, action, "objective"),
        f"{first_step}: {keys.open(group.id, action, 'first_step')}",
        f"{indicator}: {keys.open(group.id, action, 'indicator')}",
    ]
    steps = db.scalars(
        select(ActionProgress)
        .where(ActionProgress.action_id == action.id)
        .order_by(ActionProgress.noted_on, ActionProgress.created_at)
    ).all()
    lines += [f"{progress} ({p.noted_on}): {keys.open(group.id, p, 'note')}" for p in steps]
    return MemoryItem(
        group.id,
        MemoryKind.action,
        action.id,
        action.session_id,
        "synthesis",
        None,
        action.updated_at,
        "\n".join(lines),
    )


def _learning(keys: Keyring, group_id: str, row: Learning) -> MemoryItem:
    return MemoryItem(
        group_id,
        MemoryKind.learning,
        row.id,
        row.session_id,
        "learning",
        row.user_id,
        row.created_at,
        keys.open(group_id, row, "text"),
    )


def _segment(db: Session, keys: Keyring, group_id: str, row: TranscriptSegment) -> MemoryItem:
    job = db.get(TranscriptionJob, row.job_id)
    return MemoryItem(
        group_id,
        MemoryKind.segment,
        row.id,
        row.session_id,
        row.phase,
        row.edited_by or (job.uploaded_by if job else None),
        row.updated_at,
        keys.open(group_id, row, "text"),
    )


def _theme(db: Session, keys: Keyring, group_id: str, theme: Theme) -> MemoryItem:
    ideas = db.scalars(
        select(Idea)
        .where(Idea.theme_id == theme.id)
        .order_by(Idea.created_at, Idea.source_id, Idea.position)
    ).all()
    label = keys.open(group_id, theme, "label") if theme.label_sealed else ""
    lines = [label, *(f"- {keys.open(group_id, i, 'text')}" for i in ideas)]
    return MemoryItem(
        group_id,
        MemoryKind.theme,
        theme.id,
        theme.session_id,
        "consultation",
        None,
        max((i.created_at for i in ideas), default=theme.created_at),
        "\n".join(lines),
    )


def _regulation(keys: Keyring, group_id: str, row: RegulationSummary) -> MemoryItem:
    # The points as JSON (see companion/assist/regulation.py StoredPoints): kind and text.
    points = json.loads(keys.open(group_id, row, "body"))["points"]
    return MemoryItem(
        group_id,
        MemoryKind.regulation,
        row.id,
        row.session_id,
        "learning",
        row.edited_by,
        row.updated_at,
        "\n".join(f"{p['kind']}: {p['text']}" for p in points),
    )


def _in_group(db: Session, group_id: str, session_id: str) -> bool:
    session = db.get(CodevSession, session_id)
    return session is not None and session.group_id == group_id


def load(
    db: Session, keys: Keyring, group_id: str, kind: MemoryKind | str, source_id: str
) -> MemoryItem | None:
    """The memory of one source as it is now; None when it is gone (or not of this group)."""
    kind = MemoryKind(kind)
    if kind is MemoryKind.note:
        note = db.get(Note, source_id)
        if note is None or not _in_group(db, group_id, note.session_id):
            return None
        return _note(keys, group_id, note)
    if kind is MemoryKind.contract:
        contract = db.get(Contract, source_id)
        if contract is None or not _in_group(db, group_id, contract.session_id):
            return None
        return _contract(keys, group_id, contract)
    if kind is MemoryKind.action:
        action = db.get(Action, source_id)
        group = db.get(Group, group_id)
        if action is None or group is None or not _in_group(db, group_id, action.session_id):
            return None
        return _action(db, keys, group, action)
    if kind is MemoryKind.theme:
        theme = db.get(Theme, source_id)
        if theme is None or not _in_group(db, group_id, theme.session_id):
            return None
        return _theme(db, keys, group_id, theme)
    if kind is MemoryKind.segment:
        segment = db.get(TranscriptSegment, source_id)
        if segment is None or not _in_group(db, group_id, segment.session_id):
            return None
        return _segment(db, keys, group_id, segment)
    if kind is MemoryKind.regulation:
        summary = db.get(RegulationSummary, source_id)
        if summary is None or not _in_group(db, group_id, summary.session_id):
            return None
        return _regulation(keys, group_id, summary)
    learning = db.get(Learning, source_id)
    if learning is None or not _in_group(db, group_id, learning.session_id):
        return None
    return _learning(keys, group_id, learning)


def all_items(db: Session, keys: Keyring, group_id: str) -> Iterator[MemoryItem]:
    """Every memory of the group, rebuilt from the database (for a reindex)."""
    group = db.get(Group, group_id)
    if group is None:
        return
    sessions = select(CodevSession.id).where(CodevSession.group_id == group_id)
    for note in db.scalars(
        select(Note).where(Note.session_id.in_(sessions)).order_by(Note.created_at, Note.id)
    ):
        yield _note(keys, group_id, note)
    for contract in db.scalars(select(Contract).where(Contract.session_id.in_(sessions))):
        yield _contract(keys, group_id, contract)
    actions = db.scalars(
        select(Action).where(Action.session_id.in_(sessions)).order_by(Action.created_at)
    ).all()
    for action in actions:
        yield _action(db, keys, group, action)
    for learning in db.scalars(select(Learning).where(Learning.session_id.in_(sessions))):
        yield _learning(keys, group_id, learning)
    for segment in db.scalars(
        select(TranscriptSegment)
        .join(TranscriptionJob, TranscriptionJob.id == TranscriptSegment.job_id)
        .where(TranscriptSegment.session_id.in_(sessions), TranscriptionJob.status == "done")
    ):
        yield _segment(db, keys, group_id, segment)
    for theme in db.scalars(select(Theme).where(Theme.session_id.in_(sessions))):
        yield _theme(db, keys, group_id, theme)
    for summary in db.scalars(
        select(RegulationSummary).where(RegulationSummary.session_id.in_(sessions))
    ):
        yield _regulation(keys, group_id, summary)


def expected_ids(db: Session, group_id: str) -> set[str]:
    """The memory ids `all_items` would make, from ids alone (nothing opened): what the group's
    collection should hold once its outbox is empty."""
    sessions = select(CodevSession.id).where(CodevSession.group_id == group_id)
    tables: list[tuple[MemoryKind, Any]] = [
        (MemoryKind.note, Note),
        (MemoryKind.contract, Contract),
        (MemoryKind.action, Action),
        (MemoryKind.learning, Learning),
        (MemoryKind.theme, Theme),
        (MemoryKind.regulation, RegulationSummary),
    ]
    found = {
        memory_id(kind, row_id)
        for kind, table in tables
        for row_id in db.scalars(select(table.id).where(table.session_id.in_(sessions)))
    }
    done = (
        select(TranscriptSegment.id)
        .join(TranscriptionJob, TranscriptionJob.id == TranscriptSegment.job_id)
        .where(TranscriptSegment.session_id.in_(sessions), TranscriptionJob.status == "done")
    )
    # The themes of a consultation still running go in when it ends (ideas.remember_themes).
    consulting = select(CodevSession.id).where(
        CodevSession.group_id == group_id, CodevSession.running == Phase.consultation.value
    )
    waiting = {
        memory_id(MemoryKind.theme, row_id)
        for row_id in db.scalars(select(Theme.id).where(Theme.session_id.in_(consulting)))
    }
    return (found - waiting) | {
        memory_id(MemoryKind.segment, row_id) for row_id in db.scalars(done)
    }
