"""Each group's memory: index what the group stores, search it, rebuild it, drop it.

A memory reaches Chroma as (rotated vector, sealed document, clear metadata):
- the vector is the plaintext's embedding, rotated by the group's secret orthogonal matrix;
- the document is `sealed:v1:<base64>` of AES-GCM under the group's data key, with associated
  data that binds the group, the kind and the memory id (a document moved to another group or
  another memory fails to open);
- the metadata holds only ids, the kind, the phase and the date, which filters need.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.errors import Invalid
from companion.memory import rerank, sources
from companion.memory.chroma import SEALED_PREFIX, MemoryUnavailable, StoredHit, VectorStore
from companion.memory.embeddings import Embedder, EmbedderUnavailable, make_embedder
from companion.memory.indexer import Indexer
from companion.memory.rotation import Rotations, rotate
from companion.memory.schemas import MemoryHit, MemoryKind, MemorySearchView
from companion.memory.sources import MemoryItem
from companion.store.keyring import KeyGone, Keyring
from companion.store.models import Group, MemoryOutbox, utcnow
from companion.store.outbox import take_marks
from companion.vault import DataKey, IntegrityError, MasterKey

log = logging.getLogger(__name__)

RECORD_TYPE = "memory"
EMBED_BATCH = 64
INDEX_BATCH = 256


@dataclass
class DrainReport:
    indexed: int = 0
    removed: int = 0
    failed: int = 0
    failed_groups: list[str] = field(default_factory=list)


@dataclass
class Filters:
    kind: MemoryKind | None = None
    session_id: str | None = None
    since: datetime | date | None = None
    until: datetime | date | None = None


def _epoch(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _bounds(
    since: datetime | date | None, until: datetime | date | None
) -> tuple[int | None, int | None]:
    """Epoch seconds; a date `until` includes its whole day."""
    low = high = None
    if since is not None:
        start = since if isinstance(since, datetime) else datetime.combine(since, time.min)
        low = _epoch(start)
    if until is not None:
        if isinstance(until, datetime):
            high = _epoch(until)
        else:
            high = _epoch(datetime.combine(until + timedelta(days=1), time.min)) - 1
    return low, high


class Memory:
    """The memory of every group, for one application (or one CLI command)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        master: MasterKey,
        *,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.master = master
        self._embedder = embedder
        self.store = store or VectorStore(settings)
        self.rotations = Rotations()
        self._write = threading.Lock()
        self._installed = False
        self.indexer = Indexer(self.index_pending)
        self.healing: dict[str, int] = {}  # group id -> memories missing, while it reindexes
        self.healed_at_start: dict[str, int] | None = None  # None until the start's check ends

    # --- lifecycle --------------------------------------------------------------------------

    def install(self) -> None:
        """Index after every commit of these sessions that stored content (or deleted a group)."""
        if not self._installed:
            event.listen(self.sessions, "after_commit", self._after_commit)
            event.listen(self.sessions, "after_soft_rollback", self._after_rollback)
            self._installed = True

    def close(self) -> None:
        self.indexer.stop()
        if self._installed:
            event.remove(self.sessions, "after_commit", self._after_commit)
            event.remove(self.sessions, "after_soft_rollback", self._after_rollback)
            self._installed = False
        self.store.close()

    def _after_rollback(self, db: Session, _previous: object) -> None:
        if not db.in_transaction():
            take_marks(db)  # what was marked was rolled back with it

    def _after_commit(self, db: Session) -> None:
        # Runs inside the caller's commit: it must never raise, the content is already stored.
        pending, dropped = take_marks(db)
        for group_id in dropped:
            try:
                self.drop_group(group_id)
            except Exception as exc:
                log.warning(
                    "The memory of deleted group %s was not dropped or not shredded (%s); "
                    "`companion memory reindex --all` finishes it.",
                    group_id,
                    type(exc).__name__,
                )
        self.indexer.hand(pending)  # embedded and written by its thread, not in the request

    # --- embeddings and sealing -------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            try:
                self._embedder = make_embedder(self.settings)
            except EmbedderUnavailable as exc:
                raise MemoryUnavailable(str(exc)) from exc
        return self._embedder

    def vectors(self, key: DataKey, texts: Sequence[str]) -> np.ndarray:
        """The texts' embeddings, rotated with the group's secret matrix."""
        embedder = self.embedder
        rows: list[list[float]] = []
        try:
            for start in range(0, len(texts), EMBED_BATCH):
                rows += embedder.embed(texts[start : start + EMBED_BATCH])
        except EmbedderUnavailable as exc:
            raise MemoryUnavailable(str(exc)) from exc
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise MemoryUnavailable("The embedding model returned vectors of the wrong shape.")
        return rotate(matrix, self.rotations.get(key, matrix.shape[1]))

    def seal(self, key: DataKey, item: MemoryItem) -> str:
        payload = json.dumps({"text": item.text, "author_id": item.author_id}, ensure_ascii=False)
        sealed = key.seal(payload.encode(), RECORD_TYPE, item.memory_id, item.kind.value)
        return SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")

    def open(self, key: DataKey, hit: StoredHit) -> tuple[str, str | None]:
        """(text, author id) of a stored memory; IntegrityError if it is not this group's."""
        kind = str(hit.metadata.get("kind", ""))
        if not hit.document.startswith(SEALED_PREFIX):
            raise IntegrityError(f"memory {hit.id} is not sealed")
        try:
            sealed = base64.b64decode(hit.document.removeprefix(SEALED_PREFIX), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise IntegrityError(f"memory {hit.id} is not valid base64") from exc
        payload = json.loads(key.open(sealed, RECORD_TYPE, hit.id, kind))
        author = payload.get("author_id")
        return str(payload["text"]), str(author) if author is not None else None

    @staticmethod
    def metadata(item: MemoryItem) -> dict[str, str | int]:
        return {
            "kind": item.kind.value,
            "source_id": item.source_id,
            "session_id": item.session_id,
            "phase": item.phase,
            "at": _epoch(item.at),
        }

    def index(self, keys: Keyring, group_id: str, items: Sequence[MemoryItem]) -> None:
        """Embed, rotate, seal and upsert these memories of the group."""
        if not items:
            return
        key = keys.get(group_id)
        vectors = self.vectors(key, [i.text for i in items])
        self.store.upsert(
            group_id,
            [i.memory_id for i in items],
            vectors,
            [self.seal(key, i) for i in items],
            [self.metadata(i) for i in items],
            embedder=self.embedder.name,
        )

    # --- the outbox -------------------------------------------------------------------------

    def index_pending(self, group_id: str | None = None, limit: int = 500) -> DrainReport:
        """Index what waits in the outbox (of one group, or all), in a transaction of its own."""
        with self.sessions() as db:
            report = self.drain(db, Keyring(db, self.master), group_id, limit)
            db.commit()
        return report

    def drain(
        self, db: Session, keys: Keyring, group_id: str | None = None, limit: int = 500
    ) -> DrainReport:
        """Index outbox rows in the caller's transaction; failures stay in the outbox."""
        report = DrainReport()
        query = select(MemoryOutbox).order_by(MemoryOutbox.created_at, MemoryOutbox.id)
        if group_id is not None:
            query = query.where(MemoryOutbox.group_id == group_id)
        with self._write:
            rows = db.scalars(query.limit(limit)).all()
            by_group: dict[str, list[MemoryOutbox]] = defaultdict(list)
            for row in rows:
                by_group[row.group_id].append(row)
            for gid, group_rows in by_group.items():
                try:
                    indexed, removed = self._apply(db, keys, gid, group_rows)
                except KeyGone:
                    pass  # the group is being deleted: nothing to index
                except Exception as exc:
                    log.warning(
                        "Indexing %d item(s) of group %s failed (%s); they wait in the outbox.",
                        len(group_rows),
                        gid,
                        type(exc).__name__,
                    )
                    for row in group_rows:
                        row.attempts += 1
                        row.last_error = type(exc).__name__[:60]
                        row.tried_at = utcnow()
                    report.failed += len(group_rows)
                    report.failed_groups.append(gid)
                    continue
                else:
                    report.indexed += indexed
                    report.removed += removed
                done = [row.id for row in group_rows]
                db.execute(delete(MemoryOutbox).where(MemoryOutbox.id.in_(done)))
        return report

    def _apply(
        self, db: Session, keys: Keyring, group_id: str, rows: Iterable[MemoryOutbox]
    ) -> tuple[int, int]:
        items: list[MemoryItem] = []
        gone: list[str] = []
        for kind, source_id in dict.fromkeys((r.kind, r.source_id) for r in rows):
            item = sources.load(db, keys, group_id, kind, source_id)
            if item is None:
                gone.append(sources.memory_id(kind, source_id))
            else:
                items.append(item)
        self.index(keys, group_id, items)
        self.store.delete(group_id, gone)
        return len(items), len(gone)

    def pending(self, db: Session, group_id: str) -> int:
        return int(
            db.scalar(
                select(func.count())
                .select_from(MemoryOutbox)
                .where(MemoryOutbox.group_id == group_id)
            )
            or 0
        )

    # --- search -----------------------------------------------------------------------------

    def search(
        self,
        db: Session,
        keys: Keyring,
        *,
        group_id: str,
        query: str,
        filters: Filters | None = None,
        limit: int = 10,
    ) -> MemorySearchView:
        """The group's memories nearest to the query, opened; only this group's collection."""
        text = query.strip()
        if not text:
            raise Invalid("The query is empty; type a few words to search the group's memory.")
        most = self.settings.memory.max_query_chars
        if len(text) > most:
            raise Invalid(f"The query is {len(text)} characters long; the limit is {most}.")
        if not 1 <= limit <= 100:
            raise Invalid("limit must be between 1 and 100.")
        filters = filters or Filters()
        low, high = _bounds(filters.since, filters.until)
        if low is not None and high is not None and low > high:
            raise Invalid("since is after until; swap them.")
        # Read your writes: what this group stored and is still waiting is indexed first.
        self.drain(db, keys, group_id)
        key = keys.get(group_id)
        conditions: list[dict[str, object]] = []
        if filters.kind is not None:
            conditions.append({"kind": MemoryKind(filters.kind).value})
        if filters.session_id is not None:
            conditions.append({"session_id": filters.session_id})
        if low is not None:
            conditions.append({"at": {"$gte": low}})
        if high is not None:
            conditions.append({"at": {"$lte": high}})
        vector = self.vectors(key, [text])[0]
        opened: list[tuple[StoredHit, str, str | None]] = []
        for stored in self.store.query(group_id, vector, max(limit, rerank.POOL), conditions):
            try:
                body, author = self.open(key, stored)
            except (IntegrityError, ValueError, KeyError) as exc:
                log.error("Memory %s of group %s failed to open: %s", stored.id, group_id, exc)
                continue
            opened.append((stored, body, author))
        best = rerank.order(
            text,
            [
                rerank.Candidate(
                    body,
                    1.0 - stored.distance,
                    str(stored.metadata["session_id"]),
                    rerank.asks_something(
                        body,
                        kind=str(stored.metadata["kind"]),
                        phase=str(stored.metadata["phase"]),
                    ),
                )
                for stored, body, _ in opened
            ],
        )
        hits = [self._hit(*opened[n]) for n in best[:limit]]
        return MemorySearchView(query=text, hits=hits, pending=self.pending(db, group_id))

    def _hit(self, stored: StoredHit, body: str, author: str | None) -> MemoryHit:
        meta = stored.metadata
        most = self.settings.memory.snippet_chars
        snippet = body if len(body) <= most else body[: most - 1].rstrip() + "…"
        return MemoryHit(
            memory_id=stored.id,
            kind=MemoryKind(str(meta["kind"])),
            source_id=str(meta["source_id"]),
            session_id=str(meta["session_id"]),
            phase=str(meta["phase"]),
            author_id=author,
            at=datetime.fromtimestamp(int(meta["at"]), UTC),
            snippet=snippet,
            score=round(1.0 - stored.distance, 4),
        )

    # --- rebuilding and dropping ------------------------------------------------------------

    def reindex(self, group_id: str) -> int:
        """Rebuild the group's memory from the database; returns how many memories it holds."""
        with self.sessions() as db:
            keys = Keyring(db, self.master)
            if db.get(Group, group_id) is None:
                self.drop_group(group_id)
                return 0
            waiting = list(
                db.scalars(select(MemoryOutbox.id).where(MemoryOutbox.group_id == group_id))
            )
            with self._write:
                built = self.store.embedder_of(group_id)
                if built is not None and built != self.embedder.name:
                    self.store.drop(group_id)  # another model: its vectors are incomparable
                seen: set[str] = set()
                batch: list[MemoryItem] = []
                for item in sources.all_items(db, keys, group_id):
                    batch.append(item)
                    if len(batch) >= INDEX_BATCH:
                        self.index(keys, group_id, batch)
                        seen.update(i.memory_id for i in batch)
                        batch = []
                self.index(keys, group_id, batch)
                seen.update(i.memory_id for i in batch)
                stale = [i for i in self.store.ids(group_id) if i not in seen]
                self.store.delete(group_id, stale)
            if waiting:
                db.execute(delete(MemoryOutbox).where(MemoryOutbox.id.in_(waiting)))
            db.commit()
        return len(seen)

    def missing(self, group_id: str) -> int:
        """How many of the group's memories the database holds that Chroma does not (those
        still waiting in the outbox aside): a lost or truncated collection."""
        with self.sessions() as db:
            expected = sources.expected_ids(db, group_id)
            waiting = {
                sources.memory_id(kind, source_id)
                for kind, source_id in db.execute(
                    select(MemoryOutbox.kind, MemoryOutbox.source_id).where(
                        MemoryOutbox.group_id == group_id
                    )
                )
            }
        return len(expected - waiting - set(self.store.ids(group_id)))

    def heal(self) -> dict[str, int]:
        """Reindex every group whose memory lacks what the database holds (a Chroma directory
        lost or restored from an older backup); what was missing, by group. Run at start, in a
        thread of its own (`heal_in_background`)."""
        healed: dict[str, int] = {}
        for group_id in self.group_ids():
            try:
                lacking = self.missing(group_id)
                if lacking:
                    log.warning(
                        "The memory of group %s lacks %d of its items: reindexing it.",
                        group_id,
                        lacking,
                    )
                    self.healing[group_id] = lacking
                    self.reindex(group_id)
                    healed[group_id] = lacking
            except (MemoryUnavailable, EmbedderUnavailable, KeyGone) as exc:
                log.error("The memory of group %s could not be checked: %s", group_id, exc)
            finally:
                self.healing.pop(group_id, None)
        return healed

    def heal_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._heal_quietly, name="memory-heal", daemon=True)
        self.healed_at_start = None
        thread.start()
        return thread

    def _heal_quietly(self) -> None:
        try:
            self.healed_at_start = self.heal()
        except Exception:  # a check that fails must not stop the service; the log says why
            log.exception("Checking the memory against the database failed")
            self.healed_at_start = {}

    def state(self) -> dict[str, Any]:
        """For /readyz: whether the start's check is done, what it healed, what heals now."""
        return {
            "checked": self.healed_at_start is not None,
            "reindexed_at_start": len(self.healed_at_start or {}),
            "reindexing": sum(self.healing.values()),
        }

    def group_ids(self) -> list[str]:
        with self.sessions() as db:
            return list(db.scalars(select(Group.id).order_by(Group.created_at)))

    def orphans(self) -> list[str]:
        """Collections whose group no longer exists (its deletion could not drop them)."""
        known = set(self.group_ids())
        return [g for g in self.store.group_ids() if g not in known]

    def drop_group(self, group_id: str, *, shred: bool = True) -> bool:
        """Drop the group's collection and, with `shred`, make Chroma's files forget it (a
        deleted collection's bytes stay in them otherwise: see VectorStore.shred)."""
        self.rotations.forget(group_id)
        with self._write:  # no indexing runs while the file is rewritten
            dropped = self.store.drop(group_id)
            if dropped and shred:
                self.store.shred()
        return dropped

    def shred(self) -> list[str]:
        """Forget in Chroma's files every collection deleted so far (older versions dropped
        them without this); the index directories removed."""
        with self._write:
            return self.store.shred()
