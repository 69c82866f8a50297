"""Group ideas into themes as they arrive, so theme ids never change under the reader.

Each new idea joins the theme whose ideas it is closest to on average (cosine of sentence
embeddings), if that is at least `threshold`; otherwise it opens a new theme. Ideas never move
once placed: the grouping a facilitator saw a minute ago is still there, only grown. An idea
at least `duplicate` close to an earlier one is marked as its near-duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Measured on bench/eval/consultations.*.json with the bundled multilingual USE embeddings
# (python bench/eval/run.py --themes prints the adjusted Rand index for other values).
THEME_THRESHOLD = 0.30
DUPLICATE_THRESHOLD = 0.80


@dataclass
class ThemeSlot:
    """A theme as the grouping sees it: its id and the vectors of its ideas."""

    id: str
    vectors: list[np.ndarray] = field(default_factory=list)

    def closeness(self, vector: np.ndarray) -> float:
        return float(np.mean([float(v @ vector) for v in self.vectors])) if self.vectors else -1.0


@dataclass(frozen=True)
class Placement:
    theme: int | None  # index of the theme joined; None: open a new one
    duplicate_of: int | None  # index (in `placed`) of the idea this one repeats


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def place(
    vector: np.ndarray,
    themes: list[ThemeSlot],
    placed: list[np.ndarray],
    threshold: float = THEME_THRESHOLD,
    duplicate: float = DUPLICATE_THRESHOLD,
) -> Placement:
    """Where a new idea (unit vector) goes, given the themes so far and every placed idea."""
    twin: int | None = None
    if placed:
        similarities = np.stack(placed) @ vector
        best = int(np.argmax(similarities))
        if float(similarities[best]) >= duplicate:
            twin = best
    scores = [t.closeness(vector) for t in themes]
    if scores and max(scores) >= threshold:
        return Placement(int(np.argmax(scores)), twin)
    return Placement(None, twin)
