"""The vector store: ChromaDB, one collection per group, and nothing Chroma could embed or read.

- Embedded `PersistentClient` under the data dir by default, `HttpClient` with
  COMPANION_CHROMA_URL; anonymized telemetry off in both.
- One collection per group, named from the group id: Chroma's tenants and databases are not an
  isolation boundary, a collection handle is. Every call names the group.
- Collections have no embedding function: vectors always come with the call. Documents must be
  sealed (see companion.memory.service); `where_document` is refused, because Chroma's
  full-text index over base64 ciphertext only returns false matches.
- One writer per embedded directory: the process holds an exclusive lock on it, so a second
  process (a CLI reindex beside a running service) fails clearly instead of corrupting it.
- Deleting a collection is not enough to forget it: Chroma 1.5 deletes its rows but leaves
  their bytes in free pages of chroma.sqlite3 (and in its full-text index), and leaves the
  collection's HNSW directory on disk (chroma-core/chroma#5259). `shred` removes both.
  And the HNSW library writes an index's whole capacity to its files, unused slots included,
  as malloc handed them: freed memory of the process, another group's vectors and ids among
  it. So the allocator zeroes what it hands out (`_zero_new_memory`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Concatenate, ParamSpec, TypeVar

import numpy as np

from companion.config import Settings
from companion.errors import Conflict, DomainError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

PREFIX = "companion-group-"
SEALED_PREFIX = "sealed:v1:"
SCHEMA = "companion-memory/v1"
BATCH = 1000
SQLITE_FILE = "chroma.sqlite3"  # Chroma's own name for its database in an embedded directory
FULLTEXT = "embedding_fulltext_search"  # Chroma's FTS5 table (trigrams of the documents)

MetaValue = str | int | float | bool
P = ParamSpec("P")
R = TypeVar("R")


class MemoryUnavailable(DomainError):
    """The vector store (or the embedding model) cannot be used right now; nothing was lost."""

    status = 503


class NeedsReindex(Conflict):
    """The group's collection was built with another embedding model."""


@dataclass(frozen=True)
class StoredHit:
    id: str
    document: str
    metadata: Mapping[str, Any]
    distance: float


def collection_name(group_id: str) -> str:
    try:
        canonical = str(uuid.UUID(group_id))
    except ValueError:
        raise ValueError(f"not a group id: {group_id!r}") from None
    return PREFIX + canonical


class _DirectoryLock:
    """An exclusive flock on <dir>/.companion.lock, shared by every user in this process."""

    _held: dict[Path, tuple[BinaryIO, int]] = {}  # noqa: RUF012 - process-wide registry
    _guard = threading.Lock()

    @classmethod
    def acquire(cls, directory: Path) -> None:
        import fcntl

        path = directory.resolve() / ".companion.lock"
        with cls._guard:
            if path in cls._held:
                handle, count = cls._held[path]
                cls._held[path] = (handle, count + 1)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise MemoryUnavailable(
                    f"Another process writes the embedded memory at {directory} (embedded Chroma "
                    "allows one writer): stop the service first, or run a Chroma server and set "
                    "COMPANION_CHROMA_URL for every process."
                ) from None
            cls._held[path] = (handle, 1)

    @classmethod
    def release(cls, directory: Path) -> None:
        path = directory.resolve() / ".companion.lock"
        with cls._guard:
            if path not in cls._held:
                return
            handle, count = cls._held.pop(path)
            if count > 1:
                cls._held[path] = (handle, count - 1)
            else:
                handle.close()  # closing the file releases the lock


M_PERTURB = -6  # glibc's mallopt parameter


@functools.cache
def _zero_new_memory() -> bool:
    """Have glibc's malloc fill what it frees with 0xff and what it hands out with 0x00 (its
    M_PERTURB, as MALLOC_PERTURB_=255 would at start), for the whole process, once.

    hnswlib (inside Chroma) mallocs an index's capacity and writes all of it to
    data_level0.bin and length.bin, the unused slots too: without this they carry whatever
    the allocator reused, and a deleted group's vectors and ids were found, after its
    deletion, in the index file of a group that stays (chroma-core/hnswlib hnswalg.h,
    persistence of `max_elements_` slots). The cost: a memset on each malloc and free. Not
    covered: chunks glibc keeps in its per-thread cache (tcache, up to 1 KiB) skip it, so a
    small index file (length.bin, 4 bytes a slot) could still carry a few freed bytes."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # None: not a glibc (macOS)
    if mallopt is not None and mallopt(M_PERTURB, 0xFF) == 1:
        return True
    log.warning(
        "The allocator could not be told to zero memory (not glibc?): unused slots of Chroma's "
        "index files may hold bytes of freed memory, deleted groups' included."
    )
    return False


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


class _Gate:
    """Many Chroma calls at once, or one maintenance step alone.

    `shred` rewrites chroma.sqlite3 with Python's SQLite, a library other than the one inside
    Chroma: their file locks do not see each other within one process, so no Chroma call may
    run meanwhile. One gate per embedded directory in the process (stores on the same
    directory share Chroma's client too). Not re-entrant: a store method never nests another.
    """

    _by_path: dict[Path, _Gate] = {}  # noqa: RUF012 - process-wide registry
    _guard = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0
        self._alone = False

    @classmethod
    def of(cls, directory: Path) -> _Gate:
        with cls._guard:
            return cls._by_path.setdefault(directory.resolve(), cls())

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone)
            self._alone = True  # new calls wait from now on: the step is not starved
            self._cond.wait_for(lambda: self._users == 0)
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


def _gated(
    method: Callable[Concatenate[VectorStore, P], R],
) -> Callable[Concatenate[VectorStore, P], R]:
    """Run a store method through the gate (shared), so that `shred` never overlaps it."""

    @functools.wraps(method)
    def call(self: VectorStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._gate.shared():
            return method(self, *args, **kwargs)

    return call


def _scrub(directory: Path) -> list[str]:
    """Remove what Chroma keeps on disk of collections it deleted; the segment directories
    removed. Chroma must not have the files open (see VectorStore.shred)."""
    db = sqlite3.connect(directory / SQLITE_FILE, isolation_level=None, timeout=30)
    try:
        live = {str(row[0]) for row in db.execute("SELECT id FROM segments")}
        # A vector segment's HNSW files (vectors, and ids in index_metadata.pickle) live in
        # <dir>/<segment id>/; Chroma 1.5 leaves them when it deletes the collection.
        removed = [
            entry.name
            for entry in sorted(directory.iterdir())
            if entry.is_dir() and _is_uuid(entry.name) and entry.name not in live
        ]
        for name in removed:
            shutil.rmtree(directory / name)
        try:
            # Deleted rows of an FTS5 table stay in its older index segments (trigrams of the
            # sealed documents) until they are merged: merge them all.
            db.execute(f"INSERT INTO {FULLTEXT}({FULLTEXT}) VALUES('optimize')")
        except sqlite3.OperationalError as exc:  # no such table, or an SQLite without trigrams
            log.warning("Chroma's full-text index was not merged: %s", exc)
        # Rebuild the file without its free pages, where the deleted rows' bytes remain, then
        # empty a write-ahead log if Chroma ever uses one (it runs in rollback mode today).
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return removed


def _where_of(conditions: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not conditions:
        return None
    if len(conditions) == 1:
        return dict(conditions[0])
    return {"$and": [dict(c) for c in conditions]}


class VectorStore:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.memory.chroma_url
        self.path = settings.resolved_chroma_path
        self.timeout_s = settings.memory.chroma_timeout_s
        self._client: ClientAPI | None = None
        self._locked = False
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()
        # Every Chroma call passes this gate (shared); `shred` and `close` go through it alone.
        self._gate = _Gate() if self.url else _Gate.of(self.path)

    @property
    def where(self) -> str:
        return self.url or str(self.path)

    # --- the client -------------------------------------------------------------------------

    def _connect(self) -> ClientAPI:
        import chromadb
        import httpx
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if self.url:
            url = httpx.URL(self.url)
            client = chromadb.HttpClient(
                host=url.host,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            # The client waits forever by default; a hung server must not hang a request.
            session = getattr(getattr(client, "_server", None), "_session", None)
            if isinstance(session, httpx.Client):
                session.timeout = httpx.Timeout(self.timeout_s)
            return client
        _zero_new_memory()  # before Chroma allocates anything of ours
        if not self._locked:  # `shred` closes the client but keeps the directory's lock
            _DirectoryLock.acquire(self.path)
            self._locked = True
        try:
            return chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)
        except BaseException:
            _DirectoryLock.release(self.path)
            self._locked = False
            raise

    def client(self) -> ClientAPI:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._connect()
                except MemoryUnavailable:
                    raise
                except Exception as exc:
                    raise self._unavailable(exc) from exc
            return self._client

    def _unavailable(self, exc: BaseException) -> MemoryUnavailable:
        log.warning("Memory store at %s failed: %s: %s", self.where, type(exc).__name__, exc)
        # A server that restarted may have new collection ids: look them up again next time.
        self._collections.clear()
        return MemoryUnavailable(
            f"The memory store ({'Chroma server' if self.url else 'embedded Chroma'}) is "
            f"unavailable ({type(exc).__name__}). Stored content is safe and will be indexed "
            "when it is back; retry the search later."
        )

    def _close_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._collections.clear()
            if client is not None:
                try:
                    client.close()  # type: ignore[attr-defined]
                except Exception:
                    log.debug("closing the Chroma client failed", exc_info=True)

    def close(self) -> None:
        with self._gate.alone():  # calls in flight end first
            self._close_client()
            with self._lock:
                if self._locked:
                    _DirectoryLock.release(self.path)
                    self._locked = False

    def shred(self) -> list[str]:
        """Make the embedded directory forget every collection deleted so far: their rows'
        bytes in chroma.sqlite3's free pages and full-text index, their HNSW directories.
        Returns the directories removed. Blocks every other call to the store meanwhile (the
        file is rewritten whole); with a Chroma server it is the server's files, not ours."""
        if self.url:
            log.warning("A Chroma server's files are not shredded from here; see docs/memory.md.")
            return []
        with self._gate.alone():
            # Chroma's own connections and open HNSW files go first: nothing of Chroma touches
            # the files while they are rewritten (the client opens again at the next call).
            self._close_client()
            if not (self.path / SQLITE_FILE).exists():
                return []
            try:
                removed = _scrub(self.path)
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable(exc) from exc
        if removed:
            log.info("Removed %d index directories of deleted collections.", len(removed))
        return removed

    # --- collections ------------------------------------------------------------------------

    def _collection(
        self, group_id: str, *, embedder: str | None = None, dimension: int | None = None
    ) -> Collection | None:
        """The group's collection; created when `embedder` is given, else None if absent."""
        name = collection_name(group_id)
        with self._lock:
            cached = self._collections.get(group_id)
        if cached is None:
            client = self.client()
            try:
                if embedder is None:
                    if name not in {c.name for c in client.list_collections()}:
                        return None
                    cached = client.get_collection(name, embedding_function=None)
                else:
                    cached = client.get_or_create_collection(
                        name,
                        embedding_function=None,  # never embed: vectors come with every call
                        configuration={"hnsw": {"space": "cosine"}},
                        metadata={"schema": SCHEMA, "embedder": embedder, "dimension": dimension},
                    )
            except Exception as exc:
                raise self._unavailable(exc) from exc
            with self._lock:
                self._collections[group_id] = cached
        meta = cached.metadata or {}
        if embedder is not None and meta.get("embedder") != embedder:
            raise NeedsReindex(
                f"This group's memory was built with the embedding model {meta.get('embedder')!r}, "
                f"not {embedder!r}: run `companion memory reindex --group {group_id}`."
            )
        return cached

    @_gated
    def embedder_of(self, group_id: str) -> str | None:
        collection = self._collection(group_id)
        if collection is None:
            return None
        value = (collection.metadata or {}).get("embedder")
        return str(value) if value is not None else None

    @_gated
    def group_ids(self) -> list[str]:
        """The groups that have a collection here."""
        try:
            names = [c.name for c in self.client().list_collections()]
        except MemoryUnavailable:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return sorted(n.removeprefix(PREFIX) for n in names if n.startswith(PREFIX))

    @_gated
    def drop(self, group_id: str) -> bool:
        """Delete the group's collection; False when it had none."""
        name = collection_name(group_id)
        with self._lock:
            self._collections.pop(group_id, None)
        try:
            client = self.client()
            if name not in {c.name for c in client.list_collections()}:
                return False
            client.delete_collection(name)
        except MemoryUnavailable:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return True

    # --- records ----------------------------------------------------------------------------

    @_gated
    def upsert(
        self,
        group_id: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, MetaValue]],
        *,
        embedder: str,
    ) -> None:
        if not ids:
            return
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError("one vector per id: Chroma must never compute embeddings itself")
        if len(documents) != len(ids) or len(metadatas) != len(ids):
            raise ValueError("one document and one metadata per id")
        if not all(d.startswith(SEALED_PREFIX) for d in documents):
            raise ValueError("documents reach Chroma sealed; refusing a plaintext document")
        collection = self._collection(group_id, embedder=embedder, dimension=vectors.shape[1])
        assert collection is not None
        try:
            for start in range(0, len(ids), BATCH):
                end = start + BATCH
                collection.upsert(
                    ids=list(ids[start:end]),
                    embeddings=vectors[start:end],
                    documents=list(documents[start:end]),
                    metadatas=[dict(m) for m in metadatas[start:end]],
                )
        except Exception as exc:
            raise self._unavailable(exc) from exc

    @_gated
    def delete(self, group_id: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self._collection(group_id)
        if collection is None:
            return
        try:
            collection.delete(ids=list(ids))
        except Exception as exc:
            raise self._unavailable(exc) from exc

    @_gated
    def ids(self, group_id: str) -> list[str]:
        collection = self._collection(group_id)
        if collection is None:
            return []
        try:
            return list(collection.get(include=[])["ids"])
        except Exception as exc:
            raise self._unavailable(exc) from exc

    @_gated
    def count(self, group_id: str) -> int:
        collection = self._collection(group_id)
        if collection is None:
            return 0
        try:
            return int(collection.count())
        except Exception as exc:
            raise self._unavailable(exc) from exc

    @_gated
    def query(
        self,
        group_id: str,
        vector: np.ndarray,
        n: int,
        conditions: Sequence[Mapping[str, Any]] = (),
        *,
        where_document: Mapping[str, Any] | None = None,
    ) -> list[StoredHit]:
        """The `n` nearest memories of the group, with their sealed documents."""
        if where_document is not None:
            raise ValueError(
                "where_document is refused: documents are sealed, so Chroma's full-text filter "
                "would only match ciphertext"
            )
        if vector.ndim != 1:
            raise ValueError("one query vector: Chroma must never compute embeddings itself")
        collection = self._collection(group_id)
        if collection is None:
            return []
        try:
            res = collection.query(
                query_embeddings=vector[np.newaxis, :],
                n_results=n,
                where=_where_of(conditions),
                include=["documents", "metadatas", "distances"],
            )
        except Exception as exc:
            raise self._unavailable(exc) from exc
        ids = res["ids"][0]
        documents = (res.get("documents") or [[]])[0]
        metadatas = (res.get("metadatas") or [[]])[0]
        distances = (res.get("distances") or [[]])[0]
        return [
            StoredHit(i, d or "", dict(m or {}), float(dist))
            for i, d, m, dist in zip(ids, documents, metadatas, distances, strict=True)
        ]
