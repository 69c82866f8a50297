"""The draft action plan held to the ideas it cites, without the model.

A small model pads its actions: it cites ideas the action is not made of, writes resources and
indicators that nothing said supports ("Des appareils de communication", "Resources: None"),
repeats one action in other words, and gives every action the same delay. So, by the sentence
embeddings the ideas were grouped with and by the words said:

- a cited idea stays only if the action is made of it: it is among the ideas nearest to the
  action's objective and first step, or close to them in its own right;
- a resource or an indicator none of whose words comes from the cited ideas or the contract
  is left empty, for the client to fill;
- an action as close as ALIKE to an earlier one repeats it;
- delays all alike are spread by the actions' size (the ideas they are made of).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from companion.assist.ideas.grouping import unit
from companion.assist.ideas.service import Embed
from companion.text import content_word, words


class Planned(Protocol):
    """An action as the model wrote it or as the draft holds it."""

    objective: str
    first_step: str


# A cited idea among the action's nearest (five, or a quarter of the ideas when there are
# more than twenty) is one it is made of.
NEAREST = 5
CLOSE = 0.45  # or one at least this close to the action (cosine)
# Two actions this close (objective and first step) say the same: in bench/eval the same
# action in other words ("Create a shared backlog of all weekend requests…" / "create a
# shared backlog with estimates") came at 0.60-0.68, distinct ones at 0.32-0.56.
ALIKE = 0.6
# A field that says nothing was needed is empty, not a resource.
EMPTY = frozenset({"none", "n/a", "na", "aucune", "aucun", "rien", "néant", "-", "—"})


def _prefixes(text: str) -> set[str]:
    """Content words on their first five letters ("tableaux" was said when "tableau" was)."""
    return {w[:5] for w in map(content_word, words(text)) if len(w) >= 4 and not w.isdigit()}


@dataclass(frozen=True)
class Support:
    """What the checks compare an action with: every idea's unit vector and words by ref, the
    contract's words, and the embeddings for the action's own text."""

    vectors: dict[str, np.ndarray]
    texts: dict[str, str]
    contract: str
    embed: Embed

    def vector(self, action: Planned) -> np.ndarray:
        """The action's objective and first step, embedded (what two alike actions share)."""
        text = f"{action.objective}. {action.first_step}"
        return unit(np.asarray(self.embed([text])[0], dtype=np.float32))

    def made_of(self, action: np.ndarray, refs: Sequence[str]) -> list[str]:
        """The `refs` the action is made of, in their order."""
        scores = {ref: float(v @ action) for ref, v in self.vectors.items()}
        most = max(NEAREST, len(scores) // 4)
        nearest = set(sorted(scores, key=lambda r: -scores[r])[:most])
        return [r for r in refs if r in scores and (r in nearest or scores[r] >= CLOSE)]

    def supported(self, field: str, refs: Sequence[str]) -> str:
        """`field` when one of its words was said in the cited ideas or the contract, else ""."""
        if field.strip().casefold().rstrip(".") in EMPTY:
            return ""
        said = set().union(_prefixes(self.contract), *(_prefixes(self.texts[r]) for r in refs))
        return field if _prefixes(field) & said else ""


def alike(a: np.ndarray, b: np.ndarray) -> bool:
    return float(a @ b) >= ALIKE


def largest_likeness(vectors: Sequence[np.ndarray]) -> float | None:
    """The highest cosine between two of the actions (the bench reports it), None for < 2."""
    pairs = [float(a @ b) for n, a in enumerate(vectors) for b in vectors[n + 1 :]]
    return max(pairs) if pairs else None


def spread(weeks: Sequence[int], sizes: Sequence[int]) -> list[int]:
    """The delays as given when they differ; all alike (a small model copies its example),
    spread two weeks apart by size: the action made of fewer ideas first."""
    if len(set(weeks)) > 1 or len(weeks) < 2:
        return list(weeks)
    order = sorted(range(len(weeks)), key=lambda n: (sizes[n], n))
    spread_weeks = [0] * len(weeks)
    for rank, n in enumerate(order):
        spread_weeks[n] = min(12, 2 * (rank + 1))
    return spread_weeks
