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
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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

MetaValue = str | int | float | bool


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

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._collections.clear()
            if client is not None:
                try:
                    client.close()  # type: ignore[attr-defined]
                except Exception:
                    log.debug("closing the Chroma client failed", exc_info=True)
            if self._locked:
                _DirectoryLock.release(self.path)
                self._locked = False

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

    def embedder_of(self, group_id: str) -> str | None:
        collection = self._collection(group_id)
        if collection is None:
            return None
        value = (collection.metadata or {}).get("embedder")
        return str(value) if value is not None else None

    def group_ids(self) -> list[str]:
        """The groups that have a collection here."""
        try:
            names = [c.name for c in self.client().list_collections()]
        except MemoryUnavailable:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return sorted(n.removeprefix(PREFIX) for n in names if n.startswith(PREFIX))

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

    def ids(self, group_id: str) -> list[str]:
        collection = self._collection(group_id)
        if collection is None:
            return []
        try:
            return list(collection.get(include=[])["ids"])
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def count(self, group_id: str) -> int:
        collection = self._collection(group_id)
        if collection is None:
            return 0
        try:
            return int(collection.count())
        except Exception as exc:
            raise self._unavailable(exc) from exc

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
