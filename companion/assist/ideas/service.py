"""The ideas of a consultation (phase 4), kept grouped into themes while the phase runs.

`refresh` is incremental and idempotent: it reads the phase's notes and transcript segments,
cuts the turns it has not seen (or that were corrected) into ideas, embeds only those, and
places them into the themes (companion/assist/ideas/grouping.py). What the client says is left out:
in phase 4 the client listens. Ideas, their vectors and theme labels are sealed with the
group's key; a theme's label is remade only when its ideas changed, and never once a person
named it. The facilitator's corrections are in companion/assist/ideas/corrections.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from companion.assist import contract
from companion.assist.ideas import grouping, labels, opened
from companion.assist.ideas.schemas import IdeasView, IdeaView, LabelSource, SourceKind, ThemeView
from companion.assist.ideas.split import split
from companion.assist.phase_texts import stamps_of, texts_of
from companion.errors import Conflict, DomainError
from companion.locks import SessionLocks
from companion.memory.embeddings import EmbedderUnavailable
from companion.memory.schemas import MemoryKind
from companion.method.phases import Language, Phase
from companion.recent import Recent
from companion.sessions import changes
from companion.sessions.schemas import Person
from companion.sessions.service import person, state
from companion.store import outbox as memory
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Idea, Theme, TranscriptSegment, new_id, utcnow

Embed = Callable[[Sequence[str]], list[list[float]]]


class IdeasUnavailable(DomainError):
    """The embedding model cannot be used right now; nothing stored changed."""

    status = 503


def embedded(embed: Embed, texts: Sequence[str]) -> list[list[float]]:
    try:
        return embed(texts)
    except EmbedderUnavailable as exc:
        raise IdeasUnavailable(f"Ideas cannot be grouped right now: {exc}") from exc


KEY_WORDS_PER_LABEL = 3
KEPT_LABELS = (LabelSource.model, LabelSource.edited)  # not remade from key words

# One refresh of a session at a time in this process (the request and the background runner
# may both ask); across processes the unique (source, position) key protects.
session_lock = SessionLocks()


class Freshness:
    """What each session's ideas were last brought up to date with, in this process: a
    request that finds nothing said since reads the stored themes without a refresh (which
    reads and opens every turn, and writes), so many open pages cost one refresh per change."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}
        self._guard = threading.Lock()

    def current(self, session_id: str, said: str) -> bool:
        with self._guard:
            return self._seen.get(session_id) == said

    def knows(self, session_id: str) -> bool:
        """Whether this process refreshed the session's ideas at all."""
        with self._guard:
            return session_id in self._seen

    def note(self, session_id: str, said: str) -> None:
        with self._guard:
            self._seen[session_id] = said


freshness = Freshness()


def bring_up_to_date(
    db: Session, keys: Keyring, session: CodevSession, language: Language, embed: Embed
) -> None:
    """Refresh the session's ideas, unless nothing was said since the last refresh in this
    process, and commit (inside the session's lock: the runner reads what this added)."""
    # Read before the refresh: what is said meanwhile makes the next call refresh again.
    said = changes.said(db, session.id) + language.value
    if freshness.current(session.id, said):
        return
    with session_lock(session.id):
        if freshness.current(session.id, said):
            # Refreshed by whoever held the lock (the runner, another request): end this
            # transaction, so that what follows reads what they committed.
            db.commit()
            return
        refresh(db, keys, session, language, embed)
        db.commit()
    freshness.note(session.id, said)


def require_consultation(session: CodevSession) -> None:
    if not state(session).has_reached(Phase.consultation):
        raise Conflict(
            "Ideas come from the consultation (phase 4), which has not started in this session."
        )


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    id: str
    author_id: str | None
    speaker: str | None
    text: str
    start_s: float | None = None
    end_s: float | None = None


def sources(
    db: Session, keys: Keyring, session: CodevSession, only: Collection[str] | None = None
) -> list[Source]:
    """The consultants' turns of phase 4 (those of `only`, ids, when given), in the order they
    were said (notes, then each recording in turn); the client's own are left out."""
    found: list[Source] = []
    for said in texts_of(db, keys, session, Phase.consultation, only):
        # A note or a live stream is the client's own when they wrote or spoke it; an
        # uploaded recording is of the room, kept whoever uploaded it.
        if (not said.segment or said.live) and said.author_id == session.client_id:
            continue
        found.append(
            Source(
                SourceKind.segment if said.segment else SourceKind.note,
                said.id,
                said.author_id,
                said.speaker,
                said.text,
                said.start_s,
                said.end_s,
            )
        )
    return found


def vectors(db: Session, keys: Keyring, session: CodevSession) -> dict[str, np.ndarray]:
    """Every idea's unit vector (idea id -> vector), as the ideas were grouped with."""
    ids = list(db.scalars(select(Idea.id).where(Idea.session_id == session.id)))
    return {i: o.vector for i, o in _opened(db, keys, session.group_id, ids).items()}


def _opened(
    db: Session, keys: Keyring, group_id: str, ids: Collection[str]
) -> dict[str, opened.Opened]:
    """These ideas opened (idea id -> what it holds); only those not opened before are read."""
    found = opened.known_of(group_id, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        rows = db.scalars(select(Idea).where(Idea.id.in_(missing)))
        found.update(opened.of_rows(keys, group_id, rows))
    return found


class Placed(NamedTuple):
    """A stored idea as a refresh and the key words read it: where it stands, not what it
    says (opened.py keeps that). Read as columns: loading hundreds of entities after each
    note was a large part of a refresh."""

    id: str
    theme_id: str
    source_id: str
    position: int
    start: int
    end: int


def _placed(idea: Idea) -> Placed:
    return Placed(idea.id, idea.theme_id, idea.source_id, idea.position, idea.start, idea.end)


def basis(ideas: Sequence[Idea | Placed]) -> str:
    """A fingerprint of a set of ideas (ids only)."""
    return basis_of_ids([i.id for i in ideas])


def basis_of_ids(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _stored(db: Session, session_id: str) -> tuple[list[Theme], list[Placed]]:
    themes = list(
        db.scalars(select(Theme).where(Theme.session_id == session_id).order_by(Theme.number))
    )
    rows = db.execute(
        select(Idea.id, Idea.theme_id, Idea.source_id, Idea.position, Idea.start, Idea.end)
        .where(Idea.session_id == session_id)
        .order_by(Idea.created_at, Idea.source_id, Idea.position)
    )
    return themes, [Placed._make(row) for row in rows]


# What each turn of a consultation was last cut into, in this process: (session, language) ->
# turn id -> (the turn's stamp, the ids of its ideas). A turn whose stamp and ideas are still
# those is neither opened nor cut again, so a refresh opens only what was said or corrected
# since (another process's refresh changes the ideas' ids: the turn is then checked again).
_settled: Recent[dict[str, tuple[str, tuple[str, ...]]]] = Recent(64, max_age_s=600)


def _ids(ideas: Sequence[Placed]) -> tuple[str, ...]:
    return tuple(sorted(i.id for i in ideas))


def refresh(
    db: Session, keys: Keyring, session: CodevSession, language: Language, embed: Embed
) -> int:
    """Bring the session's ideas up to date with its phase-4 content; returns how many ideas
    were added. The caller commits."""
    group_id = session.group_id
    themes, ideas = _stored(db, session.id)
    by_source: dict[str, list[Placed]] = {}
    for idea in ideas:
        by_source.setdefault(idea.source_id, []).append(idea)
    stamps = stamps_of(db, session, Phase.consultation)
    memo = f"{session.id}|{language.value}"
    settled = _settled.get(memo) or {}
    unsettled = [
        turn for turn, stamp in stamps.items()
        if settled.get(turn) != (stamp, _ids(by_source.get(turn, [])))
    ]  # fmt: skip
    kept = set(stamps).difference(unsettled)  # turns whose ideas stand as they are
    wanted: list[tuple[Source, list[tuple[int, int, str]]]] = []
    # All of them (a first refresh in this process) is read without a list of ids.
    only = unsettled if len(unsettled) < len(stamps) else None
    texts = _opened(
        db, keys, group_id, [i.id for turn in only or by_source for i in by_source.get(turn, [])]
    )
    removed: set[str] = set()
    for source in sources(db, keys, session, only):
        kept.add(source.id)
        spans = [(s.start, s.end, s.text) for s in split(source.text, language)]
        have = sorted(by_source.get(source.id, []), key=lambda i: i.position)
        if [(i.start, i.end, texts[i.id].text) for i in have] == spans:
            continue
        removed.update(i.id for i in have)  # the turn was corrected: its ideas are cut again
        if spans:
            wanted.append((source, spans))
    # Turns no longer there (a recording transcribed again), or no longer a consultant's.
    for turn, gone in by_source.items():
        if turn not in kept:
            removed.update(i.id for i in gone)
    if removed:
        db.execute(delete(Idea).where(Idea.id.in_(removed)))
    changed = bool(wanted or removed)
    db.flush()
    ideas = [i for i in ideas if i.id not in removed]
    if wanted:
        made_themes, made_ideas = _place(
            db, keys, session=session, themes=themes, ideas=ideas, wanted=wanted, embed=embed
        )
        themes, ideas = [*themes, *made_themes], [*ideas, *made_ideas]
    dropped = drop_empty(db, session.id)
    themes = [t for t in themes if t.id not in dropped]
    if changed or dropped:
        label_with_words(db, keys, session, language, embed, stored=(themes, ideas))
    if changed:
        remember_themes(db, session, [t.id for t in themes], dropped)
    now: dict[str, list[Placed]] = {}
    for idea in ideas:
        now.setdefault(idea.source_id, []).append(idea)
    _settled.add(memo, {turn: (stamp, _ids(now.get(turn, []))) for turn, stamp in stamps.items()})
    return sum(len(spans) for _, spans in wanted)


def remember_themes(
    db: Session, session: CodevSession, kept: Sequence[str], dropped: Sequence[str] = ()
) -> None:
    """Have these themes (re)indexed in the group's memory at its next write or search (not in
    this commit: the background runner's commits must not wait on embeddings). While phase 4
    runs a kept theme waits for the phase's end (consultation_ended indexes every theme then):
    its ideas change with each note, and each indexing would embed the whole theme again."""
    if session.running != Phase.consultation.value:
        for theme_id in kept:
            memory.enqueue(db, session.group_id, MemoryKind.theme, theme_id, later=True)
    for theme_id in dropped:  # out of the memory at once (no embedding)
        memory.enqueue(db, session.group_id, MemoryKind.theme, theme_id, later=True)


def consultation_ended(db: Session, session: CodevSession) -> None:
    """Phase 4 has just ended: every theme goes into the group's memory with this commit."""
    for theme_id in db.scalars(select(Theme.id).where(Theme.session_id == session.id)):
        memory.enqueue(db, session.group_id, MemoryKind.theme, theme_id)


def _place(
    db: Session,
    keys: Keyring,
    *,
    session: CodevSession,
    themes: list[Theme],
    ideas: list[Placed],
    wanted: list[tuple[Source, list[tuple[int, int, str]]]],
    embed: Embed,
) -> tuple[list[Theme], list[Placed]]:
    """Embed the wanted turns' ideas and place each into a theme (a new one when none is
    close); the themes and ideas made."""
    group_id = session.group_id
    key = keys.get(group_id)
    made_themes: list[Theme] = []
    made_ideas: list[Placed] = []
    texts = [text for _, spans in wanted for _, _, text in spans]
    vectors = [grouping.unit(np.asarray(v, dtype=np.float32)) for v in embedded(embed, texts)]
    slots = {t.id: grouping.ThemeSlot(t.id) for t in themes}
    placed: list[np.ndarray] = []
    placed_ids: list[str] = []
    known = _opened(db, keys, group_id, [i.id for i in ideas])
    for stored in ideas:
        vector = known[stored.id].vector
        slots[stored.theme_id].vectors.append(vector)
        placed.append(vector)
        placed_ids.append(stored.id)
    order = list(slots.values())
    number = max((t.number for t in themes), default=0)
    at = iter(vectors)
    now = utcnow()
    made = 0  # strictly increasing times keep the order the ideas were said in
    for source, spans in wanted:
        for position, (start, end, text) in enumerate(spans):
            vector = next(at)
            where = grouping.place(
                vector, order, placed, grouping.THEME_THRESHOLD, grouping.DUPLICATE_THRESHOLD
            )
            if where.theme is None:
                number += 1
                theme = Theme(id=new_id(), session_id=session.id, number=number)
                db.add(theme)
                made_themes.append(theme)
                db.flush()  # before its ideas: no relationship() tells the flush the order
                order.append(grouping.ThemeSlot(theme.id))
                slot = order[-1]
            else:
                slot = order[where.theme]
            idea = Idea(
                id=new_id(),
                session_id=session.id,
                source_kind=source.kind,
                source_id=source.id,
                position=position,
                start=start,
                end=end,
                author_id=source.author_id,
                theme_id=slot.id,
                duplicate_of=placed_ids[where.duplicate_of]
                if where.duplicate_of is not None
                else None,
                created_at=now + timedelta(microseconds=made),
            )
            made += 1
            keys.seal(group_id, idea, "text", text)
            idea.vector_sealed = key.seal(vector.tobytes(), Idea.__tablename__, idea.id, "vector")
            opened.remember(group_id, idea.id, text, vector)
            db.add(idea)
            made_ideas.append(_placed(idea))
            slot.vectors.append(vector)
            placed.append(vector)
            placed_ids.append(idea.id)
    db.flush()
    return made_themes, made_ideas


def drop_empty(db: Session, session_id: str) -> list[str]:
    """Delete the themes left without ideas (their turns were corrected); their ids."""
    used = select(Idea.theme_id).where(Idea.session_id == session_id)
    empty = list(
        db.scalars(select(Theme.id).where(Theme.session_id == session_id, Theme.id.not_in(used)))
    )
    if empty:
        db.execute(delete(Theme).where(Theme.id.in_(empty)))
    return empty


def label_with_words(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    language: Language,
    embed: Embed,
    stored: tuple[list[Theme], list[Placed]] | None = None,
) -> None:
    """Every theme gets a label at once from its ideas: its distinctive key words, else the
    words of its most central idea, whichever is closer to its own ideas than to any other
    theme's (ideas/labels.py); none when neither is (a wrong label misleads). A model label is
    kept (shown as not current) until the model labels the theme again, a person's for good.
    `stored`: the session's themes and ideas, when the caller has them at hand."""
    themes, ideas = stored or _stored(db, session.id)
    # Every label but a person's is checked again: a theme that came since may be closer to it.
    stale = [t for t in themes if t.label_source != LabelSource.edited]
    if not stale:
        return
    group_id = session.group_id
    of_theme: dict[str, list[Placed]] = {t.id: [] for t in themes}
    for idea in ideas:
        of_theme.setdefault(idea.theme_id, []).append(idea)
    known = _opened(db, keys, group_id, [i.id for i in ideas])
    said = {t.id: [known[i.id] for i in of_theme[t.id]] for t in themes}
    texts = {theme_id: [o.text for o in held] for theme_id, held in said.items()}
    members = {
        theme_id: np.stack([o.vector for o in held]) if held else np.empty((0, 0))
        for theme_id, held in said.items()
    }
    fingerprints = {t.id: basis(of_theme[t.id]) for t in stale}
    current = {t.id: keys.open(group_id, t, "label") if t.label_sealed else None for t in stale}
    # A model's label stands until the model labels the theme again; key words, while the
    # theme's ideas are the same.
    same = {
        t.id: t.label_source == LabelSource.model or t.label_basis == fingerprints[t.id]
        for t in stale
    }
    # How many themes use each word: the "document frequency" of the key words' tf-idf.
    spread = Counter(
        word for held in said.values() for word in labels.theme_words([o.words for o in held])
    )
    stopwords = contract.rules(language).stopwords
    candidates: dict[str, list[str]] = {}
    for theme in stale:
        found = labels.distinctive_words(
            [o.words for o in said[theme.id]], spread, len(themes), stopwords, KEY_WORDS_PER_LABEL
        )
        central = labels.central(texts[theme.id], members[theme.id])
        kept = (current[theme.id] or "") if same[theme.id] else ""
        candidates[theme.id] = list(
            dict.fromkeys(c for c in (kept, ", ".join(found), central) if c)
        )
    flat = [(theme_id, c) for theme_id, cs in candidates.items() for c in cs]
    proposed = embedded(embed, [c for _, c in flat]) if flat else []
    fits: dict[str, str] = {}
    for (theme_id, label), vector in zip(flat, proposed, strict=True):
        if theme_id not in fits and labels.fitting({theme_id: label}, members, [vector]):
            fits[theme_id] = label
    for theme in stale:
        label = fits.get(theme.id, "")
        if label == current[theme.id] and same[theme.id]:
            continue  # it still fits: nothing to write
        keys.seal(group_id, theme, "label", label)
        theme.label_source = LabelSource.words
        theme.label_basis = fingerprints[theme.id]
    db.flush()


def set_label(
    db: Session, keys: Keyring, *, session: CodevSession, theme_id: str, label: str, of: str
) -> bool:
    """Store a model's label for a theme, if the theme still has the ideas it was made from
    (`of`, their basis) and no person named it; False otherwise."""
    # Locked and read afresh: a facilitator's rename committed since this run began wins.
    theme = db.scalar(
        select(Theme)
        .where(Theme.id == theme_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if theme is None or theme.session_id != session.id:
        return False
    if theme.label_source == LabelSource.edited:
        return False
    members = list(db.scalars(select(Idea).where(Idea.theme_id == theme_id)))
    if basis(members) != of:
        return False
    keys.seal(session.group_id, theme, "label", label)
    theme.label_source = LabelSource.model
    theme.label_basis = of
    db.flush()
    remember_themes(db, session, [theme.id])
    return True


# The ideas as last read, by session: every open page reloads them after each change, and
# the assistance's runner reads them too; read and opened once per change of what they show.
_views: Recent[tuple[str, IdeasView]] = Recent(64, max_age_s=120)
# Each idea as last shown (views are frozen: one serves every view that shows it alike).
_idea_views: Recent[IdeaView] = Recent(16_384, max_age_s=120)


def _view_key(db: Session, keys: Keyring, session: CodevSession) -> str:
    """A digest of everything `view` shows, read without opening anything: the ideas and
    their places, the themes and their labels, the segments' times, the authors' names.

    An idea's text, source, span, author and order never change under its id (a corrected
    turn's ideas are cut again with new ids), so its id and its place stand for it: this runs
    on every read of the ideas, and a session's ideas number in the hundreds."""
    sid = session.id
    ideas = list(
        db.execute(
            select(Idea.id, Idea.theme_id, Idea.duplicate_of, Idea.author_id).where(
                Idea.session_id == sid
            )
        )
    )
    themes = db.execute(
        select(
            Theme.id, Theme.number, Theme.label_source, Theme.label_basis, Theme.label_sealed
        ).where(Theme.session_id == sid)
    )
    segments = db.execute(
        select(func.count(), func.max(TranscriptSegment.updated_at)).where(
            TranscriptSegment.session_id == sid
        )
    )
    h = hashlib.blake2b(digest_size=16)
    # As plain tuples: sorting rows compares them through Python, a large part of this once.
    for row in [*sorted(map(tuple, ideas)), *sorted(map(tuple, themes)), *map(tuple, segments)]:
        h.update(repr(row).encode())
    for author in sorted({row.author_id for row in ideas if row.author_id}):
        h.update(person(db, keys, author).name.encode())  # names: read once per process
    return h.hexdigest()


def view(db: Session, keys: Keyring, session: CodevSession) -> IdeasView:
    """The session's ideas in their themes, as stored (read again only when they changed)."""
    return keyed_view(db, keys, session)[1]


def keyed_view(db: Session, keys: Keyring, session: CodevSession) -> tuple[str, IdeasView]:
    """`view` with a digest of everything it shows."""
    key = _view_key(db, keys, session)
    known = _views.get(session.id)
    if known is not None and known[0] == key:
        return known
    found = key, _view(db, keys, session)
    _views.add(session.id, found)
    return found


def _view(db: Session, keys: Keyring, session: CodevSession) -> IdeasView:
    group_id = session.group_id
    themes = list(
        db.scalars(select(Theme).where(Theme.session_id == session.id).order_by(Theme.number))
    )
    # Columns, not entities: the texts come opened from memory (opened.py).
    ideas = list(
        db.execute(
            select(
                Idea.id,
                Idea.theme_id,
                Idea.source_kind,
                Idea.source_id,
                Idea.start,
                Idea.end,
                Idea.author_id,
                Idea.duplicate_of,
                Idea.created_at,
            )
            .where(Idea.session_id == session.id)
            .order_by(Idea.created_at, Idea.source_id, Idea.position)
        )
    )
    texts = _opened(db, keys, group_id, [i.id for i in ideas])
    # Only the segments ideas come from, and only their times and speaker (not their text).
    said = {i.source_id for i in ideas if i.source_kind == SourceKind.segment}
    times = {
        s.id: (s.start_s, s.end_s, keys.open(group_id, s, "speaker") if s.speaker_sealed else None)
        for s in db.scalars(select(TranscriptSegment).where(TranscriptSegment.id.in_(said)))
    }
    people: dict[str, Person] = {}
    by_theme: dict[str, list[IdeaView]] = {t.id: [] for t in themes}
    for n, idea in enumerate(ideas, start=1):
        if idea.author_id and idea.author_id not in people:
            people[idea.author_id] = person(db, keys, idea.author_id)
        author = people.get(idea.author_id) if idea.author_id else None
        start_s, end_s, speaker = times.get(idea.source_id, (None, None, None))
        # Everything it shows that can change under its id: most ideas show as they did.
        name = author.name if author else None
        shown = repr((idea.id, n, idea.duplicate_of, name, start_s, end_s, speaker))
        made = _idea_views.get(shown)
        if made is None:
            made = IdeaView(
                id=idea.id,
                ref=f"I{n}",
                text=texts[idea.id].text,
                author=author,
                speaker=speaker,
                source_kind=SourceKind(idea.source_kind),
                source_id=idea.source_id,
                start=idea.start,
                end=idea.end,
                start_s=start_s,
                end_s=end_s,
                duplicate_of=idea.duplicate_of,
            )
            _idea_views.add(shown, made)
        by_theme[idea.theme_id].append(made)
    views = [
        ThemeView(
            id=t.id,
            number=t.number,
            label=keys.open(group_id, t, "label") if t.label_sealed else "",
            label_source=LabelSource(t.label_source or LabelSource.words),
            label_current=t.label_source == LabelSource.edited
            or t.label_basis == basis_of_ids([i.id for i in by_theme[t.id]]),
            ideas=by_theme[t.id],
        )
        for t in themes
    ]
    return IdeasView(
        session_id=session.id,
        themes=views,
        ideas=len(ideas),
        sources=len({i.source_id for i in ideas}),
        updated_at=max((i.created_at for i in ideas), default=None),
    )
