"""A secret orthogonal rotation per group, applied to every vector before it reaches Chroma.

Embeddings stay unsealed so that search works, and embeddings can be partly inverted back to
text. Rotating a group's vectors by a secret orthogonal matrix derived from the group's data
key keeps every cosine similarity within the group exactly (Q is orthogonal: <Qa, Qb> = <a, b>)
while making the stored vectors useless to an inversion model trained on the public embedding
space, and making vectors of different groups incomparable. The matrix is derived again from
the key whenever needed (HKDF, then QR of a seeded Gaussian matrix), so shredding the key also
destroys the rotation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from threadpoolctl import threadpool_limits

from companion.vault import DataKey

INFO = b"companion/memory/rotation/v1"


def rotation_seed(key: DataKey, dimension: int) -> int:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=INFO + b"/" + key.scope.encode() + b"/" + str(dimension).encode(),
    )
    return int.from_bytes(hkdf.derive(key.material), "big")


def rotation_matrix(key: DataKey, dimension: int) -> np.ndarray:
    """A uniformly random orthogonal matrix (Haar), deterministic for one key and dimension."""
    rng = np.random.Generator(np.random.PCG64(rotation_seed(key, dimension)))
    gaussian = rng.standard_normal((dimension, dimension))
    # One BLAS thread: on shared cores a threaded QR took 0.6-3 s instead of 0.06-0.1 s.
    with threadpool_limits(1):
        q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))  # makes the distribution uniform over the orthogonal group
    return q.astype(np.float32)


class Rotations:
    """A small LRU cache of rotation matrices per group (1 MiB each at 512 dimensions)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[tuple[str, int], threading.Lock] = {}

    def get(self, key: DataKey, dimension: int) -> np.ndarray:
        slot = (key.scope, dimension)
        with self._lock:
            if slot in self._cache:
                self._cache.move_to_end(slot)
                return self._cache[slot]
            # Made once, whoever asks meanwhile waits for it (it is the costly part).
            making = self._making.setdefault(slot, threading.Lock())
        with making:
            with self._lock:
                if slot in self._cache:
                    return self._cache[slot]
            matrix = rotation_matrix(key, dimension)
        with self._lock:
            self._making.pop(slot, None)
            self._cache[slot] = matrix
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return matrix

    def forget(self, scope: str) -> None:
        with self._lock:
            for slot in [s for s in self._cache if s[0] == scope]:
                del self._cache[slot]


def rotate(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Rows of `vectors` rotated: each row v becomes v @ Q."""
    out: np.ndarray = np.asarray(vectors, dtype=np.float32) @ matrix
    return out
